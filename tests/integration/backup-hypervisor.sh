#!/bin/bash
# backup-hypervisor.sh -- the hypervisor breaking under an overlay-mode backup of one running
# guest whose writer keeps writing: libvirtd restarted before the freeze, while the guest is
# frozen, during the copy (overlay applied) and during a commit not yet ready to pivot; QEMU
# killed before the freeze, while frozen, during the copy (also of a transient domain) and
# during the commit; the overlay's file system filling up while the guest writes (QEMU
# pauses it); qemu-ga hung right after the freeze; a disk hot-plugged with --live; and
# libvirtd restarted while a restore writes its disks. Each fault lands inside a window
# widened with VIRTSNAP_FAULT=sleep:POINT:MS. virtsnap must end within a bound (not its 600 s
# commit timeout), either with a backup that verifies or with an error naming the domain; after
# `virtsnap recover` the guest runs, thawed, on its own disk with no backing file, nothing of
# ours is left on disk or open as deleted, every record it had synced before the fault is
# still there, and a later backup works and verifies (vs_hv_clean).
# VS_ONLY="name ..." runs only those scenarios (names below, in `only` calls).
set -euo pipefail
. "$VS_SOURCE_ROOT/tests/lib/harness.sh"
. "$VS_SOURCE_ROOT/tests/lib/hypervisor.sh"

vs_test_open --libvirt hv
OVL=$W/ovl
VS_HV_DISK=$W/disk.qcow2
BOUND=90           # seconds virtsnap may take after a fault

only() { [ -z "${VS_ONLY:-}" ] || [[ " $VS_ONLY " == *" $1 "* ]]; }
# no pipe into grep -q: under pipefail virsh's SIGPIPE would make the check fail
on_overlay() { [[ "$(virsh domblklist "$D" --details 2>/dev/null)" == *.virtsnap-* ]]; }
frozen() { case "$(_vs_freeze_status "$D")" in *'"frozen"'*) true;; *) false;; esac; }
# the commit-started sleep follows the commit's start: the overlay is still applied
commit_running() { on_overlay && sleeping && vs_log "block job: $(virsh blockjob "$D" vda --info 2>&1 | tr '\r\n' '  ')"; }
paused() { [[ "$(virsh domstate "$D" 2>/dev/null)" == paused* ]]; }
sleeping() { vs_fault_sleeping "$VS_HV_PID"; }
recover() { vs_virtsnap recover --state-dir "${1:-$STATE}" 2>&1 | sed 's/^/  recover: /' >&2 || vs_fail "recover failed"; }
after() {   # MARK: recover, invariants, a later backup
  recover
  vs_hv_clean "$D" "$STATE" "$W" "$OVL"
  vs_hv_later_backup "$D" "$REPO" "$STATE" "$1"
}
restart_guest() {   # after recover: the domain starts on its own disk
  local out
  rm -f "$(vs_console_log "$D")"
  out=$(virsh start "$D" 2>&1) || vs_fail "virsh start $D after recover: $out"
  vs_wait_ready "$D" "$(vs_console_log "$D")" 120 || vs_fail "$D did not boot after recover"
  vs_wait_agent "$D" 120
}

# QEMU runs in a mount namespace of its own, made when it starts: the small file system for
# the overlays must be there before the guest starts, or QEMU may not see it.
mkdir -p "$OVL"
mount -t tmpfs -o size=16M,mode=755 tmpfs "$OVL" && vs_on_exit umount -l "$OVL"
vs_guest_disk "$VS_HV_DISK" >/dev/null
vs_guest_start "$D" "$VS_HV_DISK"
vs_virtsnap backup --repo "$REPO" --init --state-dir "$STATE" "$D" >/dev/null

libvirtd_at() {   # NAME POINT MS WAITCMD [ARGS...]: libvirtd restarted inside the window
  local name=$1 point=$2 ms=$3 cond=$4 mark; shift 4
  vs_log "--- $name: libvirtd restarted at $point"
  mark=$(vs_records_mark "$D")
  vs_hv_backup_bg "$name" "$point" "$ms" --repo "$REPO" --state-dir "$STATE" "$@" "$D"
  vs_hv_wait_window 60 "$name: window at $point" $cond
  # written (and synced) on the overlay once it is applied: what a lost overlay would lose
  frozen || mark=$(vs_records_mark "$D")
  vs_libvirtd_bounce
  [ -z "${after_fault:-}" ] || "$after_fault"
  vs_hv_backup_wait "$BOUND"
  vs_hv_expect_done_or_failed "$D"
  after "$mark"
}

only lv-before-freeze && libvirtd_at lv-before-freeze before-freeze 5000 sleeping
only lv-frozen && libvirtd_at lv-frozen after-freeze 6000 frozen --max-freeze 20
only lv-copy && libvirtd_at lv-copy after-copy 5000 'eval on_overlay && sleeping'
# The commit faults land before its READY event: from just before the backup the guest writes
# 45 MiB at ~3 MiB/s, steadily (zeros: urandom is slow and uneven under TCG), faster than
# --commit-bandwidth 1 lets the commit catch up, so the commit is never ready in the window.
churn() {
  virsh qemu-agent-command "$D" '{"execute":"guest-exec","arguments":{"path":"/bin/sh","arg":["-c","for i in $(seq 0 44); do dd if=/dev/zero of=/data/churn bs=1M count=1 seek=$i conv=notrunc,fsync 2>/dev/null; usleep 300000; done"]}}' >/dev/null
  sleep 1
}
# the throttle only served to keep the commit from READY until the fault: lifted, the commit
# converges at once and a virtsnap that reconnected does not wait out 45 MiB at 1 MiB/s
# (libvirtd, just restarted, may refuse it for a moment; and virtsnap, which lost the old job's
# events with the connection, cancels it and starts a new commit at its --commit-bandwidth:
# lifted too, or the new one crawls through the churn at 1 MiB/s, ~45 s)
unthrottle() {
  ( for _ in $(seq 60); do
      virsh blockjob "$D" vda --bandwidth 0 >/dev/null 2>&1
      sleep 0.25
    done ) &
  UNTHROTTLE_PID=$!
}
only lv-commit && { churn; after_fault=unthrottle libvirtd_at lv-commit commit-started 5000 commit_running --commit-bandwidth 1;
  kill "$UNTHROTTLE_PID" 2>/dev/null || true; wait "$UNTHROTTLE_PID" 2>/dev/null || true; }

qemu_killed_at() {   # NAME POINT MS WAITCMD [ARGS...]: QEMU killed inside the window
  local name=$1 point=$2 ms=$3 cond=$4 mark; shift 4
  vs_log "--- $name: QEMU killed at $point"
  mark=$(vs_records_mark "$D")
  vs_hv_backup_bg "$name" "$point" "$ms" --repo "$REPO" --state-dir "$STATE" "$@" "$D"
  vs_hv_wait_window 60 "$name: window at $point" $cond
  frozen || mark=$(vs_records_mark "$D")
  vs_qemu_kill "$D"
  vs_hv_backup_wait "$BOUND"
  vs_assert_eq "$VS_HV_RC" 1 "$name: exit status"
  vs_assert_contains "$(cat "$W/$name.err")" "$D" "$name: the error names the domain"
  recover
  vs_assert_eq "$(virsh domblklist "$D" --details | awk '$3 == "vda" {print $4}')" "$VS_HV_DISK" \
    "$name: the stopped domain's vda after recover"
  restart_guest
  after "$mark"
}

only kill-before-freeze && qemu_killed_at kill-before-freeze before-freeze 5000 sleeping
only kill-frozen && qemu_killed_at kill-frozen after-freeze 5000 frozen --max-freeze 20
only kill-copy && qemu_killed_at kill-copy after-copy 5000 'eval on_overlay && sleeping'
# What the guest synced while the active commit ran is kept, like every other record (the
# flush reaches the overlay; docs/notes/qemu-kill-during-active-commit.md). The churn's fsyncs
# commit the record log's size ahead of its unsynced tail, which then reads as NUL bytes
# after the kill; the guest's writer cuts that tail when it starts again.
only kill-commit && { churn; qemu_killed_at kill-commit commit-started 5000 commit_running --commit-bandwidth 1; }

# The same with a transient domain (virsh create): once QEMU is gone, so is libvirt's
# definition. What the guest wrote into the overlay must reach its disk all the same.
if only kill-transient; then
  T=vst-hvt-$$
  vs_log "--- kill-transient: QEMU of transient $T killed at after-copy"
  vs_guest_disk "$W/tdisk.qcow2" >/dev/null
  vs_domain_track "$T"
  vs_guest_xml "$T" "$W/tdisk.qcow2" > "$W/$T.xml"
  create_t() {
    local out
    rm -f "$(vs_console_log "$T")"
    out=$(virsh create "$W/$T.xml" 2>&1) || vs_fail "virsh create $T: $out"
    vs_wait_ready "$T" "$(vs_console_log "$T")" 120 || vs_fail "$T did not boot"
    vs_wait_agent "$T" 120
  }
  create_t
  vs_hv_backup_bg kill-transient after-copy 5000 --repo "$REPO" --state-dir "$STATE" "$T"
  vs_hv_wait_window 60 "kill-transient: window at after-copy" \
    eval '[[ "$(virsh domblklist "$T" --details 2>/dev/null)" == *.virtsnap-* ]] && sleeping'
  mark=$(vs_records_mark "$T")
  vs_qemu_kill "$T"
  vs_hv_backup_wait "$BOUND"
  vs_assert_eq "$VS_HV_RC" 1 "kill-transient: exit status"
  vs_assert_contains "$(cat "$W/kill-transient.err")" "$T" "kill-transient: the error names the domain"
  recover
  vs_assert_eq "$(qemu-img info -U --output=json "$W/tdisk.qcow2" | jq -r '.["backing-filename"] // "none"')" none \
    "kill-transient: no backing file"
  vs_assert_eq "$(ls "$W" | grep -c '^tdisk\.qcow2\.virtsnap-' || true)" 0 "kill-transient: overlay gone after recover"
  create_t
  vs_hv_clean "$T" "$STATE" "$W" "$OVL" -- "vda=$W/tdisk.qcow2"
  vs_hv_later_backup "$T" "$REPO" "$STATE" "$mark"
  virsh destroy "$T" >/dev/null
fi

# The overlay's file system fills: QEMU pauses the guest on ENOSPC. virtsnap must commit, resume
# it and say so; the write that failed goes to the disk once it runs again.
if only fill-overlay; then
  vs_log "--- fill-overlay: 24 MiB written into a 16 MiB --overlay-dir"
  mark=$(vs_records_mark "$D")
  vs_hv_backup_bg fill-overlay after-copy 15000 --repo "$REPO" --state-dir "$STATE" --overlay-dir "$OVL" "$D"
  vs_hv_wait_window 60 "fill-overlay: overlay applied" on_overlay
  # not through gexec: it waits for the command, and the guest is about to stop
  virsh qemu-agent-command "$D" '{"execute":"guest-exec","arguments":{"path":"/bin/sh","arg":["-c","dd if=/dev/urandom of=/data/fill bs=1M count=24 conv=fsync 2>/dev/null"]}}' >/dev/null
  vs_wait_for 40 "fill-overlay: guest paused on the full overlay" paused
  vs_log "guest $(virsh domstate --reason "$D" | sed -n 1p)"
  vs_hv_expect_resumed "$D"
  after "$mark"
  vs_wait_for 60 "fill-overlay: the guest's 24 MiB write completes" \
    eval '[ "$(vs_gexec "$D" "stat -c %s /data/fill" 2>/dev/null)" = $((24 << 20)) ]'
  vs_gexec "$D" 'rm -f /data/fill' >/dev/null
fi

# qemu-ga stops right after the freeze (the guest's own watcher sees the writer blocked on
# the frozen /data and sends SIGSTOP, then SIGCONT 30 s later, past --max-freeze): no thaw
# gets through, not virtsnap's nor the guardian's at the bound.
if only agent-hung; then
  vs_log "--- agent-hung: qemu-ga stopped right after the freeze"
  mark=$(vs_records_mark "$D")
  vs_gexec "$D" 'rm -f /run/vs-stopped' >/dev/null
  watcher='w=$(cat /run/writer.pid); n=0; i=0; while [ $n -lt 5 ] && [ $i -lt 3000 ]; do case $(sed -n "s/^State:[[:space:]]*//p" /proc/$w/status) in D*) n=$((n+1));; *) n=0;; esac; i=$((i+1)); usleep 10000; done; g=$(cat /run/qemu-ga.pid); kill -STOP $g; date +%s > /run/vs-stopped; sleep 30; kill -CONT $g'
  virsh qemu-agent-command "$D" "$(jq -nc --arg c "$watcher" '{execute: "guest-exec", arguments: {path: "/bin/sh", arg: ["-c", $c]}}')" >/dev/null
  sleep 1
  t0=$(date +%s)
  vs_hv_backup_bg agent-hung after-freeze 2000 --repo "$REPO" --state-dir "$STATE" --agent-timeout 2 --max-freeze 20 "$D"
  # no wait for "frozen" here: the agent may be stopped before anyone sees it answer
  vs_hv_backup_wait "$BOUND"
  # (vs_hv_backup_wait: not 'quiesced' unless backed up)
  # nobody runs a command: the guardian must get the thaw through once the agent is back
  thawed=
  while [ $(( $(date +%s) - t0 )) -lt 45 ]; do
    case "$(_vs_freeze_status "$D")" in *thawed*) thawed=1; break;; esac
    sleep 1
  done
  vs_log "agent-hung: guest thawed without a command: ${thawed:-no} ($(( $(date +%s) - t0 ))s after the backup started)"
  vs_gexec "$D" 'test -s /run/vs-stopped' || vs_fail "agent-hung: the guest's watcher never stopped qemu-ga"
  after "$mark"
fi

# A disk hot-plugged with --live is not in the inactive XML: the backup takes it (the export
# matches it) or refuses it by name; never does libvirt put its default overlay on it.
if only hotplug; then
  mark=$(vs_records_mark "$D")
  vs_hv_hotplug "$D" "$REPO" "$STATE" "$W/hotraw.img"
  vs_hv_hotplug "$D" "$REPO" "$STATE" "$W/hotq.qcow2"
  vs_hv_later_backup "$D" "$REPO" "$STATE" "$mark"
fi
# libvirtd restarted while a restore writes its disks (no libvirt needed then): the restore
# reconnects before it defines and starts the domain, which boots from a consistent disk.
if only lv-restore; then
  R=vst-hvr-$$
  vs_log "--- lv-restore: libvirtd restarted while restore --as $R writes"
  vs_domain_track "$R"
  mkdir -p "$W/restored"
  vs_log "virtsnap restore --as $R (VIRTSNAP_FAULT=sleep:restore-written:5000)"
  VIRTSNAP_FAULT=sleep:restore-written:5000 "${VIRTSNAP:-$VS_BUILD_ROOT/tools/virtsnap}" restore \
    --repo "$REPO" --state-dir "$STATE" --as "$R" --target-dir "$W/restored" --start --json "$D" \
    > "$W/lv-restore.json" 2> "$W/lv-restore.err" &
  VS_HV_PID=$!
  VS_HV_NAME=lv-restore
  vs_hv_wait_window 60 "lv-restore: restore written" sleeping
  vs_libvirtd_bounce
  vs_hv_backup_wait "$BOUND"
  vs_assert_eq "$VS_HV_RC" 0 "lv-restore: exit status"
  vs_assert_eq "$(virsh domstate "$R" | sed -n 1p)" running "lv-restore: the restored domain runs"
  vs_wait_agent "$R" 120
  virsh destroy "$R" >/dev/null
fi
vs_log "backup-hypervisor: all checks passed"
