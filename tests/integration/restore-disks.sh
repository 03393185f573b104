#!/bin/bash
# restore-disks.sh -- `restore --disks vdb` of one data disk into a running two-disk guest.
# vdb (raw ext4 with a marker file) is backed up with the guest, then wiped from inside the
# guest. While it is mounted in the guest, the restore refuses (naming the mount point) and
# changes nothing. Unmounted, it is hot-swapped: written to a temp file beside the disk,
# detached from the running guest, renamed over the old file, attached again; the guest
# mounts it and finds the marker. vda is never touched: the guest does not reboot and its
# writer keeps appending. With the guest agent gone (so whether vdb is in use cannot be
# known) the backup is written to a new file beside the disk instead, and the running
# disk is left alone.
set -euo pipefail
. "$VS_SOURCE_ROOT/tests/lib/harness.sh"

vs_test_open --libvirt rd

vs_guest_disk "$W/disk.qcow2" >/dev/null
mkdir -p "$W/src"
echo "marker-$$" > "$W/src/marker"
"$VS_GUEST_SRC/mkdisk.sh" "$W/data.raw" 64M "$W/src"
chmod 644 "$W/data.raw"
vs_guest_start "$D" "$W/disk.qcow2" \
  "<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='$W/data.raw'/><target dev='vdb' bus='virtio'/></disk>"
# The guest's name for the data disk: the virtio disk that is not vda.
gdev() { vs_gexec "$D" 'ls /dev/vd? | grep -v /dev/vda | head -n 1'; }
vs_assert_eq "$(vs_gexec "$D" "mkdir -p /mnt && mount $(gdev) /mnt && cat /mnt/marker && umount /mnt")" "marker-$$" "marker before"

vs_virtsnap backup --repo "$REPO" --init --state-dir "$STATE" --json "$D" > "$W/b.json"
ID=$(jq -r .id "$W/b.json")
[ "$ID" != null ] || vs_fail "backup failed"
vs_assert_eq "$(jq -r '[.domains[0].disks[].target] | join(",")' "$W/b.json")" "vda,vdb" "both disks backed up"
up0=$(vs_gexec "$D" 'cut -d" " -f1 /proc/uptime')

# --- mounted in the guest: refused, nothing touched ----------------------------------------------
vs_gexec "$D" "mount $(gdev) /mnt" >/dev/null
set +e; vs_virtsnap restore --repo "$REPO" --state-dir "$STATE" --disks vdb "$D" > "$W/r0.out" 2> "$W/r0.err"; rc=$?; set -e
cat "$W/r0.err" >&2
vs_assert_eq "$rc" 1 "restore of a mounted disk"
vs_assert_contains "$(cat "$W/r0.err")" "mounted on /mnt" "the mount point is named"
vs_assert_eq "$(vs_gexec "$D" 'cat /mnt/marker')" "marker-$$" "disk still in place"
vs_gexec "$D" 'umount /mnt'
vs_assert_eq "$(ls -a "$W" | grep -c 'virtsnap-restore' || true)" 0 "no temp file after the refusal"

# --- damage it, restore it -------------------------------------------------------------------------
vs_gexec "$D" "dd if=/dev/zero of=$(gdev) bs=1M count=8 conv=fsync 2>/dev/null"
vs_gexec "$D" "mount $(gdev) /mnt 2>/dev/null" >/dev/null && vs_fail "the damaged disk still mounts"
seq_before=$(vs_gexec "$D" 'tail -n 1 /data/records.log' | awk '{print $1}')
vda_xml=$(virsh dumpxml "$D" | sed -n "/<target dev='vda'/p")
t0=$(date +%s%N)
vs_virtsnap restore --repo "$REPO" --state-dir "$STATE" --disks vdb --json "$D" > "$W/r1.json"
vs_log "hot-swap restore took $(( ($(date +%s%N) - t0) / 1000000 )) ms"
cat "$W/r1.json" >&2
vs_assert_eq "$(jq -r '.domains[0] | [.ok, .in_place, .stopped, .defined] | map(tostring) | join(",")' "$W/r1.json")" \
  "true,true,false,false" "restore --disks result"
vs_assert_eq "$(jq -r '[.domains[0].disks[] | .target + ":" + .action + ":" + .path] | join(",")' "$W/r1.json")" \
  "vdb:hot-swapped:$W/data.raw" "only vdb, hot-swapped"
vs_assert_eq "$(virsh domstate "$D" | sed -n 1p)" running "guest kept running"
vs_assert_eq "$(virsh domblklist "$D" --details | awk '$3 == "vdb" {print $4}')" "$W/data.raw" "vdb is back, same file"
vs_assert_eq "$(virsh domblklist "$D" --details | awk '$3 == "vda" {print $4}')" "$W/disk.qcow2" "vda untouched"
for i in $(seq 50); do [ -n "$(gdev)" ] && break; sleep 0.2; done
vs_assert_eq "$(vs_gexec "$D" "mount $(gdev) /mnt && cat /mnt/marker && umount /mnt")" "marker-$$" "marker after the restore"
up1=$(vs_gexec "$D" 'cut -d" " -f1 /proc/uptime')
seq_after=$(vs_gexec "$D" 'tail -n 1 /data/records.log' | awk '{print $1}')
awk -v a="$up0" -v b="$up1" 'BEGIN { exit !(b > a) }' || vs_fail "the guest rebooted (uptime $up0 -> $up1)"
[ "$seq_after" -gt "$seq_before" ] || vs_fail "the writer on vda stopped ($seq_before -> $seq_after)"
vs_log "vda: writer went on ($seq_before -> $seq_after), uptime $up0 -> $up1"
vs_assert_eq "$(ls -a "$W" | grep -c 'virtsnap-restore' || true)" 0 "temp files left"
vs_assert_eq "$(stat -c %a "$W/data.raw")" 644 "mode of the replaced file kept"

# --- no agent: cannot tell whether vdb is in use, so a new file beside it -----------------------------
vs_gexec "$D" 'kill $(cat /run/qemu-ga.pid)' >/dev/null 2>&1 || true
sleep 1
sum=$(md5sum < "$W/data.raw")
vs_virtsnap restore --repo "$REPO" --state-dir "$STATE" --disks vdb --agent-timeout 2 --json "$D" > "$W/r2.json"
cat "$W/r2.json" >&2
vs_assert_eq "$(jq -r '.domains[0].disks[0] | [.action, .path] | join(",")' "$W/r2.json")" \
  "new-file,$W/data.raw.restored-$ID" "written beside"
vs_assert_contains "$(jq -r '.domains[0].disks[0].note' "$W/r2.json")" "virsh detach-disk" "how to swap it"
vs_assert_eq "$(md5sum < "$W/data.raw")" "$sum" "running disk untouched"
vs_virtsnap export --repo "$REPO" "$ID" "$D" vdb "$W/vdb.raw" --format raw
cmp "$W/vdb.raw" "$W/data.raw.restored-$ID" || vs_fail "the new file is not the backup"
vs_assert_eq "$(virsh domstate "$D" | sed -n 1p)" running "guest still running"
vs_log "restore-disks: all checks passed"
