#!/bin/bash
# cluster-verbs.sh -- `virtsnap agent` and the OCF agent ocf/domain against golden files, on
# libvirt's in-process test driver (test:///PATH with cluster-golden/node.xml: a running, a
# shut-off, a crashed and a paused domain, fresh for every call): each verb's exit code and
# first line (verbs.txt), the OCF actions' exit codes and ocf-exit-reason lines (ocf.txt,
# skipped without resource-agents' ocf-shellfuncs), the meta-data (meta-data.xml, valid
# against ra-api-1.dtd when xmllint and the DTD are there), and a stop that interrupts the
# "backup" holding the domain's lock, only when the holder's pid still has the start time
# the lock records. No root, no daemon. VS_UPDATE_GOLDEN=1 rewrites the golden files.
# Usage: cluster-verbs.sh VIRTSNAP OCF_AGENT GOLDEN_DIR
set -uo pipefail
BIN=$(realpath "${1:?virtsnap binary}")
AGENT=$(realpath "${2:?ocf/domain}")
G=$(realpath "${3:?golden dir}")
W=$(mktemp -d /tmp/vs-cluster-verbs.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$W"' EXIT
export VIRTSNAP_STATE_DIR=$W/state VIRTSNAP_LOCK_DIR=$W/lock
URI=test://$G/node.xml
fail=0

golden() {   # NAME ACTUAL
  if [ "${VS_UPDATE_GOLDEN:-}" = 1 ]; then printf '%s\n' "$2" >"$G/$1"; echo "ok: wrote $1"; return; fi
  if diff -u "$G/$1" <(printf '%s\n' "$2"); then echo "ok: $1"; else echo "FAIL: $1 differs (above)"; fail=1; fi
}

# agent ARGS...: "agent ARGS -> rc: first line of stdout | last line of stderr", paths as W/ and G/
agent() {
  local out err rc
  out=$("$BIN" agent "$@" --uri "$URI" 2>"$W/err"); rc=$?
  err=$(tail -n 1 "$W/err")
  printf 'agent %s -> %s: %s | %s\n' "$*" "$rc" "$(head -n 1 <<<"$out")" "$err" | sed -e "s#$W#W#g" -e "s#$G#G#g"
}

v=""
for d in vst-run vst-off vst-crashed vst-paused nosuch; do v+=$(agent monitor "$d")$'\n'; done
v+=$(agent online vst-off --attr DelayAfterGuestOnline=0)$'\n'
v+=$(agent monitor vst-off)$'\n'            # remembered online, found shut off: FAULTED
v+=$(agent online vst-run --attr DelayAfterGuestOnline=0)$'\n'
v+=$(agent offline vst-run --attr DelayAfterGuestOffline=0 --attr "SyncDir=$W/sync")$'\n'
v+=$(agent monitor vst-run)$'\n'            # running again in a fresh test driver: ONLINE
v+=$(agent online nosuch)$'\n'              # not defined, no GuestConfigFilePath: 6
v+=$(agent online --attr "GuestConfigFilePath=$G/vst-new.xml" --attr DelayAfterGuestOnline=0)$'\n'
v+=$(agent online nosuch --attr "GuestConfigFilePath=$W/missing.xml")$'\n'
v+=$(agent offline nosuch)$'\n'
v+=$(agent clean vst-crashed)$'\n'
v+=$(agent monitor vst-crashed)$'\n'        # the test driver brings it back crashed (QEMU kept): still FAULTED
v+=$(agent migrate vst-run --target qemu+tcp://elsewhere/system)$'\n'
v+=$(agent bogus vst-run)$'\n'
v+=$(agent online vst-run --attr Colour=blue)$'\n'
v+=$(agent online vst-run --attr DelayAfterGuestOnline=soon)$'\n'
v+=$(agent online)$'\n'
printf 'migrated' >"$W/state/cluster/vst-gone"   # the memory a migration away leaves
v+=$(agent monitor vst-gone)
golden verbs.txt "$v"
[ -f "$W/sync/vst-run.xml" ] && grep -q '<name>vst-run</name>' "$W/sync/vst-run.xml" &&
  [ "$(stat -c %a "$W/sync/vst-run.xml")" = 600 ] && echo "ok: SyncDir/vst-run.xml written, 0600" ||
  { echo "FAIL: offline did not copy the definition to SyncDir"; fail=1; }

# A "backup" holding vst-run's lock: a process that took it and wrote itself in as
# vs_domain_lock does (pid, start tick, command).
hold() {   # START_OVERRIDE (empty: its own)
  mkdir -p "$W/lock"; : >"$W/lock/00000001-1111-2222-3333-444444444444.lock"
  bash -c 'exec 9<>"$1"; flock -x 9; s=${2:-$(cut -d" " -f22 /proc/$$/stat)}
           printf "pid=%s\nstart=%s\nstate_dir=x\ncommand=backup\ntime=now\n" $$ "$s" >&9; sleep 20 9>&-' \
    _ "$W/lock/00000001-1111-2222-3333-444444444444.lock" "$1" >/dev/null 2>&1 &
  HOLDER=$!
  for _ in $(seq 50); do grep -q command= "$W/lock/00000001-1111-2222-3333-444444444444.lock" && break; sleep 0.1; done
}
hold ""
out=$("$BIN" agent offline vst-run --uri "$URI" --timeout 20 --attr DelayAfterGuestOffline=0 2>&1); rc=$?
sleep 0.2
if [ $rc = 0 ] && grep -q "interrupted virtsnap backup pid $HOLDER" <<<"$out" && ! kill -0 $HOLDER 2>/dev/null; then
  echo "ok: offline interrupted the backup holding the lock and succeeded"
else echo "FAIL: offline with a backup holding the lock: rc $rc: $out"; fail=1; fi
hold 12345                                  # a pid whose start tick is not the recorded one
t0=$(date +%s)
out=$("$BIN" agent offline vst-run --uri "$URI" --timeout 8 --attr DelayAfterGuestOffline=0 2>&1); rc=$?
if [ $rc = 0 ] && kill -0 $HOLDER 2>/dev/null && grep -q "still holds 'vst-run'" <<<"$out" &&
   [ $(( $(date +%s) - t0 )) -le 8 ]; then
  echo "ok: a holder whose start time does not match is not signalled; offline goes on, in time"
else echo "FAIL: offline with a mismatched holder: rc $rc: $out"; fail=1; fi
kill $HOLDER 2>/dev/null

# The OCF agent.
SHELLFUNCS=${OCF_ROOT:-/usr/lib/ocf}/lib/heartbeat/ocf-shellfuncs
if [ ! -r "$SHELLFUNCS" ]; then
  echo "skip: OCF agent checks ($SHELLFUNCS missing: scripts/deps.sh --test installs resource-agents)"
  exit $fail
fi
export OCF_ROOT=${OCF_ROOT:-/usr/lib/ocf} OCF_RESOURCE_INSTANCE=vst PATH=$(dirname "$BIN"):$PATH
export OCF_RESKEY_hypervisor=$URI OCF_RESKEY_CRM_meta_timeout=20000 HA_RSCTMP=$W
mk() { sed -n "/<name>$1</,/<\/domain>/p" "$G/node.xml" | sed "1s#.*#<domain type='test'><name>$1</name>#" >"$W/$1.xml"; }
for d in vst-run vst-off vst-crashed; do mk $d; done
ocf() {   # DOMAIN|- ACTION [VAR=VALUE...]
  local d=$1 a=$2 out rc; shift 2
  out=$(env ${d:+OCF_RESKEY_config=$W/$d.xml} "$@" "$AGENT" "$a" 2>&1); rc=$?
  printf 'ocf %s %s %s -> %s: %s\n' "$d" "$a" "$*" "$rc" "$(grep -o 'ocf-exit-reason:.*' <<<"$out" | tail -n 1)" |
    sed -e "s#$W#W#g" -e "s#$G#G#g"
}
o=""
o+=$(ocf vst-run monitor OCF_RESKEY_CRM_meta_interval=10000)$'\n'
o+=$(ocf vst-off monitor OCF_RESKEY_CRM_meta_interval=0)$'\n'
o+=$(ocf vst-crashed monitor OCF_RESKEY_CRM_meta_interval=0)$'\n'
o+=$(ocf vst-crashed monitor OCF_RESKEY_CRM_meta_interval=10000)$'\n'
o+=$(ocf vst-off start)$'\n'
o+=$(ocf vst-run stop OCF_RESKEY_sync_config_dir=$W/ocfsync)$'\n'
o+=$(ocf vst-run validate-all)$'\n'
o+=$(ocf "" validate-all)$'\n'
o+=$(ocf vst-run validate-all OCF_RESKEY_config=$W/none.xml)$'\n'
o+=$(ocf vst-run stop OCF_RESKEY_config=$W/none.xml)$'\n'
o+=$(ocf vst-run validate-all OCF_RESKEY_backup_repo=$W/norepo)$'\n'
o+=$(ocf vst-run migrate_to)$'\n'
o+=$(ocf vst-run migrate_to OCF_RESKEY_CRM_meta_migrate_target=node2)$'\n'
o+=$(ocf vst-run migrate_from)$'\n'
o+=$(ocf vst-run frobnicate)
golden ocf.txt "$o"
[ -f "$W/ocfsync/vst-run.xml" ] && echo "ok: stop copied the definition to sync_config_dir" ||
  { echo "FAIL: stop did not copy the definition to sync_config_dir"; fail=1; }
md=$("$AGENT" meta-data); rc=$?
[ $rc = 0 ] || { echo "FAIL: meta-data exited $rc"; fail=1; }
golden meta-data.xml "$md"
DTD=/usr/share/resource-agents/ra-api-1.dtd
if command -v xmllint >/dev/null && [ -r "$DTD" ]; then
  (cd "$(dirname "$DTD")" && xmllint --noout --valid - <<<"$md") && echo "ok: meta-data valid against ra-api-1.dtd" ||
    { echo "FAIL: meta-data is not valid against $DTD"; fail=1; }
fi
exit $fail
