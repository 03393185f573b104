#!/bin/bash
# guest-boot.sh -- proves the harness every other integration test stands on: a real test
# guest boots under libvirt (TCG here), its agent answers, its filesystem is not left
# frozen, its writer keeps appending records, an agent shutdown leaves the data disk
# clean, and the cleanup stack really removes the domain (no vst-* leftovers).
set -euo pipefail
. "${VS_SOURCE_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/lib/harness.sh"

vs_require_root
vs_libvirt_up
t0=$(date +%s%N)
vs_guest_prepare || vs_fail "cannot build the test guest"
vs_log "guest ready in $VS_GUEST_DIR ($(( ($(date +%s%N) - t0) / 1000000 )) ms, cached after the first run)"

W=$(vs_workdir)
D=vst-boot-$$
vs_guest_disk "$W/vda.qcow2" >/dev/null
vs_guest_start "$D" "$W/vda.qcow2"

vs_assert_eq "$(virsh domstate "$D" | sed -n 1p)" running "domain state"
vs_assert_eq "$(virsh dominfo "$D" | sed -n 's/^Persistent: *//p')" yes "persistent"
vs_assert_contains "$(virsh qemu-agent-command --timeout 5 "$D" '{"execute":"guest-ping"}')" \
  '"return":{}' "guest-ping reply"
vs_assert_contains "$(virsh qemu-agent-command --timeout 5 "$D" '{"execute":"guest-fsfreeze-status"}')" \
  '"return":"thawed"' "guest-fsfreeze-status"

# The writer appends ~20 records/s (one write(2) each); two reads 1 s apart must differ.
n1=$(vs_gexec "$D" 'wc -l < /data/records.log' | tr -d ' ')
sleep 1
n2=$(vs_gexec "$D" 'wc -l < /data/records.log' | tr -d ' ')
vs_log "records.log: $n1 -> $n2 lines"
[ "$n1" -gt 0 ] || vs_fail "records.log is empty"
[ "$n2" -gt "$n1" ] || vs_fail "records.log not growing ($n1 -> $n2)"
vs_assert_eq "$(vs_gexec "$D" 'grep -c " /data ext4 " /proc/mounts')" 1 "/data mounted (ext4)"

# Agent shutdown: qemu-ga runs /sbin/shutdown -> busybox init stops the writer and unmounts.
t=$(date +%s%N)
virsh shutdown "$D" --mode agent >/dev/null
vs_wait_shutoff "$D" 60
vs_log "agent shutdown took $(( ($(date +%s%N) - t) / 1000000 )) ms"
qemu-img convert -O raw "$W/vda.qcow2" "$W/vda.raw"
fsck.ext4 -fn "$W/vda.raw" > "$W/fsck.log" 2>&1 || vs_fail "data disk not clean after shutdown: $(cat "$W/fsck.log")"
debugfs -R "dump /records.log $W/records.log" "$W/vda.raw" 2>/dev/null
vs_assert_contains "$(/usr/bin/python3 "$VS_GUEST_SRC/checkrecords.py" "$W/records.log")" "OK " "records on the disk"
rm -f "$W/vda.raw"

# The persistent, shut-off domain is still defined; the cleanup stack must remove it.
virsh dominfo "$D" >/dev/null 2>&1 || vs_fail "$D vanished before cleanup (should stay defined)"
vs_cleanup_now
if virsh dominfo "$D" >/dev/null 2>&1; then vs_fail "$D still defined after cleanup"; fi
# Other vst-* domains may belong to tests running right now in another build dir; only
# ones no live test has registered count as leftovers.
live=" $(cat /tmp/virtsnap-tests/*/.domains 2>/dev/null | tr '\n' ' ') "
for n in $(virsh list --all --name | grep '^vst-' || true); do
  case "$live" in *" $n "*) ;; *) vs_fail "leftover domain $n";; esac
done
vs_log "guest-boot: boot-to-agent ${VS_LAST_BOOT_MS} ms, all checks passed"
