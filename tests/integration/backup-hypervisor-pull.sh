#!/bin/bash
# backup-hypervisor-pull.sh -- the hypervisor breaking under a `--mode=begin` backup (libvirt
# pull-mode job, NBD export, a scratch file per disk, aborted at the end) of one running guest
# whose writer keeps writing: libvirtd restarted while the guest is frozen, during the copy and
# during the job's abort;
# QEMU killed during the copy and during the abort; the scratch files' file system (the state
# dir) too small to start (refused before the freeze), or filling up while the guest overwrites
# its data (QEMU pauses it; virtsnap resumes it); a disk hot-plugged with
# --live. Each fault lands inside a window widened with VIRTSNAP_FAULT=sleep:POINT:MS (in begin
# mode, before-commit is the moment before the abort). virtsnap must end within a bound, with
# a backup that verifies or an error naming the domain; after `virtsnap recover` no job runs,
# the guest runs, thawed, on its own disk, no scratch file is left on disk or open as deleted,
# the records it had synced before the fault are all there, and two later backups work, the
# second incremental (vs_hv_clean, vs_hv_later_backup). VS_ONLY="name ..." runs only those.
set -euo pipefail
. "$VS_SOURCE_ROOT/tests/lib/harness.sh"
. "$VS_SOURCE_ROOT/tests/lib/hypervisor.sh"

vs_test_open --libvirt hvp
SMALL=$W/small     # a state dir on a 48 MiB file system: the scratch files live there
TINY=$W/tiny       # ... and one of 16 MiB, less than virtsnap asks for before it freezes
VS_HV_DISK=$W/disk.qcow2
BOUND=90           # seconds virtsnap may take after a fault

only() { [ -z "${VS_ONLY:-}" ] || [[ " $VS_ONLY " == *" $1 "* ]]; }
# no pipe into grep -q: under pipefail virsh's SIGPIPE would make the check fail
job_running() { [[ "$(virsh domjobinfo "$D" 2>/dev/null)" == *Unbounded* ]]; }
paused() { [[ "$(virsh domstate "$D" 2>/dev/null)" == paused* ]]; }
sleeping() { vs_fault_sleeping "$VS_HV_PID"; }
frozen() { case "$(_vs_freeze_status "$D")" in *'"frozen"'*) true;; *) false;; esac; }
recover() { vs_virtsnap recover --state-dir "${1:-$STATE}" 2>&1 | sed 's/^/  recover: /' >&2 || vs_fail "recover failed"; }
after() {   # MARK [STATE]: recover, invariants, two later backups
  recover "${2:-$STATE}"
  vs_hv_clean "$D" "${2:-$STATE}" "$W"
  vs_hv_later_backup "$D" "$REPO" "$STATE" "$1" pull
}
restart_guest() {
  local out
  rm -f "$(vs_console_log "$D")"
  out=$(virsh start "$D" 2>&1) || vs_fail "virsh start $D after recover: $out"
  vs_wait_ready "$D" "$(vs_console_log "$D")" 120 || vs_fail "$D did not boot after recover"
  vs_wait_agent "$D" 120
}

# QEMU opens the scratch files in its own mount namespace, made when it starts: the small
# file system must be mounted before the guest starts.
# before the guest starts: QEMU's mount namespace may not see mounts made later
mkdir -p "$SMALL" "$TINY"
mount -t tmpfs -o size=48M,mode=755 tmpfs "$SMALL" && vs_on_exit umount -l "$SMALL"
mount -t tmpfs -o size=16M,mode=755 tmpfs "$TINY" && vs_on_exit umount -l "$TINY"
vs_guest_disk "$VS_HV_DISK" >/dev/null
vs_guest_start "$D" "$VS_HV_DISK"
# data the guest overwrites in the fill scenario: a pull job copies the old clusters to scratch
vs_gexec "$D" 'dd if=/dev/urandom of=/data/bulk bs=1M count=64 conv=fsync 2>/dev/null' >/dev/null
vs_virtsnap backup --repo "$REPO" --init --state-dir "$STATE" --mode=begin "$D" >/dev/null

fault_at() {   # NAME POINT MS WAITCMD FAULT: libvirtd restarted / QEMU killed inside the window
  local name=$1 point=$2 ms=$3 cond=$4 fault=$5 mark
  vs_log "--- $name: $fault at $point"
  mark=$(vs_records_mark "$D")
  vs_hv_backup_bg "$name" "$point" "$ms" --repo "$REPO" --state-dir "$STATE" --mode=begin "$D"
  vs_hv_wait_window 60 "$name: window at $point" $cond
  frozen || mark=$(vs_records_mark "$D")     # written while the job runs
  if [ "$fault" = libvirtd ]; then
    vs_libvirtd_bounce
    vs_hv_backup_wait "$BOUND"
    vs_hv_expect_done_or_failed "$D"
  else
    vs_qemu_kill "$D"
    vs_hv_backup_wait "$BOUND"
    if [ "$point" = before-commit ]; then
      # the copy was over: a backup that verifies is as right as a failure
      vs_hv_expect_done_or_failed "$D"
    else
      vs_assert_eq "$VS_HV_RC" 1 "$name: exit status"
      vs_assert_contains "$(cat "$W/$name.err")" "$D" "$name: the error names the domain"
    fi
    recover
    vs_assert_eq "$(virsh domblklist "$D" --details | awk '$3 == "vda" {print $4}')" "$VS_HV_DISK" \
      "$name: the stopped domain's vda after recover"
    restart_guest
  fi
  after "$mark"
}

# The copy is over and the job still runs; then the abort. A thread of virtsnap sleeping while
# the job runs is the window (nothing else of it sleeps that long). QEMU killed "during the
# copy" is killed when the job runs, the guest is thawed and the copy is about to read.
# While frozen, backup-begin meets a closed connection: whether the job began after all is read
# on the new one (this run's checkpoint), and a job that did is ended with its files.
only lv-frozen && fault_at lv-frozen after-freeze 5000 frozen libvirtd
only lv-copy && fault_at lv-copy after-copy 5000 'eval job_running && sleeping' libvirtd
only lv-abort && fault_at lv-abort before-commit 5000 'eval job_running && sleeping' libvirtd
only kill-frozen && fault_at kill-frozen after-freeze 5000 frozen qemu
only kill-copy && fault_at kill-copy after-thaw 5000 'eval job_running && sleeping' qemu
only kill-abort && fault_at kill-abort before-commit 5000 'eval job_running && sleeping' qemu

# The scratch files' file system fills while the guest overwrites 24 MiB: QEMU pauses it on
# ENOSPC. virtsnap must end the job, resume the guest and say so.
if only fill-scratch; then
  # Too small to start with: refused before anything is frozen, the guest untouched.
  vs_log "--- fill-scratch: a 16 MiB --state-dir is refused up front"
  set +e
  vs_virtsnap backup --repo "$REPO" --state-dir "$TINY" --mode=begin "$D" > "$W/tiny.out" 2> "$W/tiny.err"
  rc=$?
  set -e
  vs_assert_eq "$rc" 1 "fill-scratch: exit status with a 16 MiB state dir"
  vs_assert_contains "$(cat "$W/tiny.err")" "$TINY/scratch, which has" "fill-scratch: the refusal names the room"
  vs_assert_contains "$(cat "$W/tiny.err")" "--state-dir" "fill-scratch: the refusal says what to do"
  vs_assert_eq "$(ls "$TINY/journal" 2>/dev/null | wc -l)" 0 "fill-scratch: no journal left by the refusal"
  job_running && vs_fail "fill-scratch: a job was begun for a refused run"
  vs_log "--- fill-scratch: 64 MiB overwritten with the scratch on a 48 MiB --state-dir"
  mark=$(vs_records_mark "$D")
  vs_hv_backup_bg fill-scratch after-copy 15000 --repo "$REPO" --state-dir "$SMALL" --mode=begin "$D"
  vs_hv_wait_window 60 "fill-scratch: job running" job_running
  virsh qemu-agent-command "$D" '{"execute":"guest-exec","arguments":{"path":"/bin/sh","arg":["-c","dd if=/dev/urandom of=/data/bulk bs=1M count=64 conv=notrunc,fsync 2>/dev/null"]}}' >/dev/null
  vs_wait_for 40 "fill-scratch: guest paused on the full scratch" paused
  vs_log "guest $(virsh domstate --reason "$D" | sed -n 1p)"
  vs_hv_expect_resumed "$D"
  after "$mark" "$SMALL"
fi

# A disk hot-plugged with --live: backed up (the export matches it) or refused by name; the
# guest ends on its own disks, no job and no scratch left.
if only hotplug; then
  mark=$(vs_records_mark "$D")
  vs_hv_hotplug "$D" "$REPO" "$STATE" "$W/hotraw.img" --mode=begin
  vs_hv_hotplug "$D" "$REPO" "$STATE" "$W/hotq.qcow2" --mode=begin
  vs_hv_later_backup "$D" "$REPO" "$STATE" "$mark" pull
fi
vs_log "backup-hypervisor-pull: all checks passed"
