#!/bin/bash
# Captures journals written by virtsnap at main 0d5fbb0 (its binary and nbdkit plugin
# copied to /tmp/jcap beforehand), for tests/unit/test-journal.c: each run is killed
# at a fault point while its journal exists, and the journal is copied to /tmp/jcap/out.
# Not part of the suite: run once, as root, under /tmp/vs-integration.lock (see README).
set -euo pipefail
export VS_SOURCE_ROOT=${VS_SOURCE_ROOT:-$(cd "$(dirname "$0")/../../.." && pwd)} VS_TEST_NAME=journal-capture
export VIRTSNAP_NBDKIT_PLUGIN=/tmp/jcap/block/nbdkit-virtsnap-plugin.so
. "$VS_SOURCE_ROOT/tests/lib/harness.sh"
BIN=/tmp/jcap/virtsnap-0d5fbb0
OUT=/tmp/jcap/out
vs_require_root
vs_libvirt_up
W=$(vs_workdir)
D=vst-jcap-$$
REPO=$W/repo
STATE=$W/state
grab() { for f in "$STATE"/journal/*.jsonl; do [ -e "$f" ] && cp "$f" "$OUT/$1.jsonl"; done; ls "$STATE/journal" >&2 || true; }
run() {  # NAME FAULT ARGS...: run killed at FAULT, journal kept as NAME, then recover
  local name=$1 fault=$2; shift 2
  set +e
  VIRTSNAP_FAULT=$fault "$BIN" "$@" >"$OUT/$name.out" 2>&1; echo "$name: rc $?" >&2
  set -e
  grab "$name"
  "$BIN" recover --state-dir "$STATE" >&2 || true
}

vs_guest_disk "$W/disk.qcow2" >/dev/null
vs_guest_start "$D" "$W/disk.qcow2"
"$BIN" backup --repo "$REPO" --init --state-dir "$STATE" "$D" >/dev/null
ID=$("$BIN" list --repo "$REPO" --json | jq -r '.[0].id')

run overlay-after-commit after-commit backup --repo "$REPO" --state-dir "$STATE" "$D"
run overlay-after-snapshot after-snapshot backup --repo "$REPO" --state-dir "$STATE" "$D"
run pull-before-manifest before-manifest backup --repo "$REPO" --state-dir "$STATE" --mode=begin "$D"
mkdir -p "$W/push"
run push-before-manifest before-manifest backup --repo "$REPO" --state-dir "$STATE" --push-dir "$W/push" --push "$D"
mkdir -p "$W/e"
run export-writing export-writing export --repo "$REPO" --state-dir "$STATE" "$ID" "$D" vda "$W/e/out.qcow2"
vs_domain_track "$D-2"
run restore-instant-running instant-running restore --repo "$REPO" --state-dir "$STATE" --instant --as "$D-2" "$D"
virsh destroy "$D-2" >/dev/null 2>&1 || true
ls -la "$OUT" >&2
