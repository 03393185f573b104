#!/bin/bash
# interrupts.sh -- SIGINT, SIGTERM and SIGHUP during export, restore and backup, each at a
# known moment (a fault point that holds the run: mid-write with the temp image half
# written, or once every disk is written): the run ends at its next safe point with
# 130/143/129, no temp file of ours is left anywhere (beside the target, in a pool, beside
# the VM's own disk for an in-place restore), no journal is left, the disk a restore was
# about to replace is unchanged (checksum) and a running domain keeps running; a backup
# interrupted while the guest runs on its overlay leaves it running on its original disk,
# with no backup written. kill -9 at the same moments leaves temp files that `virtsnap
# recover` removes. In-place restore of a domain that is no longer defined does not
# overwrite the file at its recorded path without --force.
set -euo pipefail
. "$VS_SOURCE_ROOT/tests/lib/harness.sh"

vs_test_open --libvirt int
BIN=${VIRTSNAP:-$VS_BUILD_ROOT/tools/virtsnap}
export VIRTSNAP_RUN_DIR=$W/run
# registered first, so it runs last: after the domains are gone
vs_on_exit "$BIN" umount --all --force

# Job control: a background job of a script starts with SIGINT ignored otherwise (and
# virtsnap keeps a signal ignored that it was started with, as nohup asks).
set -m

temps() {         # DIR: files of ours in DIR (temp images, overlays, probes)
  ls -A "$1" | grep -c 'virtsnap' || true
}
journals() { ls -A "$STATE/journal" 2>/dev/null | wc -l; }
hold() {          # POINT NAME ARGS...: virtsnap ARGS, held at fault point POINT; its pid in $pid
  local point=$1 name=$2; shift 2
  rm -f "$W/mark"
  VIRTSNAP_FAULT=hang:$point VIRTSNAP_FAULT_MARK=$W/mark "$BIN" "$@" > "$W/$name.out" 2> "$W/$name.err" &
  pid=$!
  for _ in $(seq 1 1200); do [ -e "$W/mark" ] || ! vs_alive "$pid" && break; sleep 0.05; done
  [ -e "$W/mark" ] || { cat "$W/$name.err" >&2; vs_fail "$name: virtsnap never reached $point"; }
}
signal() {        # SIG NAME: send SIG to $pid, wait (at most 60 s); its exit status in $rc
  kill -"$1" "$pid"
  for _ in $(seq 1 600); do vs_alive "$pid" || break; sleep 0.1; done
  if vs_alive "$pid"; then kill -9 "$pid"; vs_fail "$2: virtsnap did not stop within 60 s of SIG$1"; fi
  rc=0; wait "$pid" || rc=$?
  sed "s/^/  $2: /" "$W/$2.err" >&2
}
interrupt() {     # SIG POINT NAME ARGS...
  local sig=$1; shift
  hold "$@"
  signal "$sig" "$2"
}

vs_guest_disk "$W/disk.qcow2" >/dev/null
vs_guest_start "$D" "$W/disk.qcow2"
vs_gexec "$D" 'dd if=/dev/urandom of=/data/bulk bs=1M count=8 conv=fsync 2>/dev/null' >/dev/null
vs_virtsnap backup --repo "$REPO" --init --state-dir "$STATE" "$D" >/dev/null
ID=$(vs_virtsnap list --repo "$REPO" --json | jq -r '.[-1].id')
mkdir -p "$W/e" "$W/t" "$W/pool"

# --- backup: interrupted while the guest runs on its overlay ---------------------------------
interrupt INT after-snapshot backup-int backup --repo "$REPO" --state-dir "$STATE" "$D"
vs_assert_eq "$rc" 130 "backup: exit status after SIGINT"
vs_assert_contains "$(cat "$W/backup-int.err")" "interrupted by SIGINT" "backup: says it was interrupted"
vs_assert_eq "$(virsh domstate "$D" | head -1)" running "backup: the domain still runs"
vs_assert_eq "$(virsh domblklist "$D" --details | awk '$3 == "vda" {print $4}')" "$W/disk.qcow2" \
  "backup: the domain is back on its original disk"
vs_assert_eq "$(temps "$W")" 0 "backup: no overlay left"
vs_assert_eq "$(journals)" 0 "backup: no journal left"
vs_assert_eq "$(vs_virtsnap list --repo "$REPO" --json | jq length)" 1 "backup: no backup written"

# --- in place over a running domain (--force): interrupted before it is stopped ---------------
interrupt TERM restore-written inplace-running restore --repo "$REPO" --state-dir "$STATE" --force "$D"
vs_assert_eq "$rc" 143 "restore --force: exit status after SIGTERM"
vs_assert_contains "$(cat "$W/inplace-running.err")" "nothing was changed" "restore --force: says nothing changed"
vs_assert_eq "$(virsh domstate "$D" | head -1)" running "restore --force: the domain was not stopped"
vs_assert_eq "$(temps "$W")" 0 "restore --force: no temp image beside the VM's disk"
vs_assert_eq "$(journals)" 0 "restore --force: no journal left"

# --- export ------------------------------------------------------------------------------------
for c in "INT 130 qcow2" "TERM 143 raw" "HUP 129 qcow2"; do
  set -- $c
  hold export-writing "export-$1" export --repo "$REPO" --state-dir "$STATE" --format "$3" "$ID" "$D" vda "$W/e/out.$3"
  vs_assert_eq "$(temps "$W/e")" 1 "export: a temp image exists while it writes ($1)"
  signal "$1" "export-$1"
  vs_assert_eq "$rc" "$2" "export: exit status after SIG$1"
  vs_assert_contains "$(cat "$W/export-$1.err")" "interrupted by SIG$1" "export: says it was interrupted ($1)"
  vs_assert_eq "$(ls -A "$W/e" | wc -l)" 0 "export: nothing left in the target directory after SIG$1"
  vs_assert_eq "$(journals)" 0 "export: no journal left after SIG$1"
done
# kill -9: the temp image stays, and recover removes it (its journal names it).
set +e
VIRTSNAP_FAULT=export-writing "$BIN" export --repo "$REPO" --state-dir "$STATE" "$ID" "$D" vda "$W/e/out.qcow2" 2>/dev/null
rc=$?
set -e
vs_assert_eq "$rc" 137 "export: killed"
vs_assert_eq "$(temps "$W/e")" 1 "export: kill -9 leaves its temp image"
vs_virtsnap recover --state-dir "$STATE" >&2
vs_assert_eq "$(ls -A "$W/e" | wc -l)" 0 "export: recover removed the temp image of the killed export"
vs_assert_eq "$(journals)" 0 "export: recover removed the journal"

# --- restore --as --target-dir / --pool: mid-write and once written ----------------------------
vs_domain_track "$D-as"
hold export-writing as-int restore --repo "$REPO" --state-dir "$STATE" --as "$D-as" --target-dir "$W/t" --define "$D"
vs_assert_eq "$(temps "$W/t")" 1 "restore --as: a temp image exists while it writes"
signal INT as-int
vs_assert_eq "$rc" 130 "restore --as: exit status after SIGINT mid-write"
vs_assert_eq "$(ls -A "$W/t" | wc -l)" 0 "restore --as: nothing left in the target directory (mid-write)"
virsh domstate "$D-as" >/dev/null 2>&1 && vs_fail "restore --as: a domain was defined although interrupted"
interrupt TERM restore-written as-term restore --repo "$REPO" --state-dir "$STATE" --as "$D-as" --target-dir "$W/t" --define "$D"
vs_assert_eq "$rc" 143 "restore --as: exit status after SIGTERM once written"
vs_assert_eq "$(ls -A "$W/t" | wc -l)" 0 "restore --as: nothing left in the target directory (written)"
virsh domstate "$D-as" >/dev/null 2>&1 && vs_fail "restore --as: a domain was defined although interrupted"
# --instant, once its exports run and the overlays exist, before any guest starts.
if command -v nbdkit >/dev/null; then
  interrupt INT restore-written instant-int restore --repo "$REPO" --state-dir "$STATE" --instant --as "$D-as" --target-dir "$W/t" "$D"
  vs_assert_eq "$rc" 130 "restore --instant: exit status after SIGINT"
  vs_assert_eq "$(ls -A "$W/t" | wc -l)" 0 "restore --instant: no overlay or image left"
  vs_assert_eq "$("$BIN" mount --list --json | jq length)" 0 "restore --instant: its exports were stopped"
  vs_assert_eq "$(pgrep -fc "nbdkit.*log=$VIRTSNAP_RUN_DIR/" || true)" 0 "restore --instant: no nbdkit left"
  virsh domstate "$D-as" >/dev/null 2>&1 && vs_fail "restore --instant: a domain was defined although interrupted"
else
  vs_log "nbdkit not installed: --instant not interrupted"
fi
cat > "$W/pool.xml" <<EOF
<pool type='dir'><name>vst-int-$$</name><target><path>$W/pool</path></target></pool>
EOF
P=$(vs_define_pool "$W/pool.xml")
interrupt INT export-writing pool-int restore --repo "$REPO" --state-dir "$STATE" --as "$D-as" --pool "$P" --define "$D"
vs_assert_eq "$rc" 130 "restore --pool: exit status after SIGINT mid-write"
vs_assert_eq "$(ls -A "$W/pool" | wc -l)" 0 "restore --pool: no volume or temp file left in the pool"
virsh vol-refresh --pool "$P" >/dev/null 2>&1 || virsh pool-refresh "$P" >/dev/null
vs_assert_eq "$(virsh vol-list "$P" | grep -c "$D-as" || true)" 0 "restore --pool: the volume it created is gone"
vs_assert_eq "$(journals)" 0 "restore --as/--pool: no journal left"

# --- in place, the domain shut down -------------------------------------------------------------
virsh shutdown "$D" --mode agent >/dev/null
vs_wait_shutoff "$D" 60
sum=$(md5sum < "$W/disk.qcow2")
interrupt INT export-writing inplace-int restore --repo "$REPO" --state-dir "$STATE" "$D"
vs_assert_eq "$rc" 130 "restore in place: exit status after SIGINT mid-write"
vs_assert_eq "$(md5sum < "$W/disk.qcow2")" "$sum" "restore in place: disk unchanged (mid-write)"
vs_assert_eq "$(temps "$W")" 0 "restore in place: no temp image beside the disk (mid-write)"
interrupt HUP restore-written inplace-hup restore --repo "$REPO" --state-dir "$STATE" "$D"
vs_assert_eq "$rc" 129 "restore in place: exit status after SIGHUP once written"
vs_assert_eq "$(md5sum < "$W/disk.qcow2")" "$sum" "restore in place: disk unchanged (written)"
vs_assert_eq "$(temps "$W")" 0 "restore in place: no temp image beside the disk (written)"
vs_assert_eq "$(journals)" 0 "restore in place: no journal left"
# kill -9 once written: the complete temp image stays beside the disk; recover removes it.
set +e
VIRTSNAP_FAULT=restore-written "$BIN" restore --repo "$REPO" --state-dir "$STATE" "$D" >/dev/null 2>&1
rc=$?
set -e
vs_assert_eq "$rc" 137 "restore in place: killed"
vs_assert_eq "$(temps "$W")" 1 "restore in place: kill -9 leaves its temp image"
vs_virtsnap recover --state-dir "$STATE" >&2
vs_assert_eq "$(temps "$W")" 0 "restore in place: recover removed the temp image"
vs_assert_eq "$(md5sum < "$W/disk.qcow2")" "$sum" "restore in place: disk unchanged after kill -9 and recover"
vs_assert_eq "$(journals)" 0 "restore in place: recover removed the journal"

# --- in place, the domain no longer defined: the file at its path is not proven its disk -------
virsh undefine "$D" >/dev/null
set +e
vs_virtsnap restore --repo "$REPO" --state-dir "$STATE" "$D" > "$W/gone.out" 2> "$W/gone.err"
rc=$?
set -e
cat "$W/gone.err" >&2
vs_assert_eq "$rc" 1 "restore of an undefined domain over an existing file: refused"
vs_assert_contains "$(cat "$W/gone.err")" "$W/disk.qcow2" "the file is named"
vs_assert_contains "$(cat "$W/gone.err")" "give --force" "--force is offered"
vs_assert_eq "$(md5sum < "$W/disk.qcow2")" "$sum" "the file is unchanged"
vs_virtsnap restore --repo "$REPO" --state-dir "$STATE" --force --define "$D" >/dev/null
vs_assert_eq "$(virsh domstate "$D" | head -1)" "shut off" "with --force it is restored and defined"
vs_assert_eq "$(temps "$W")" 0 "no temp file left after the forced restore"
vs_log "interrupts: all checks passed"
