#!/bin/bash
# restore-block.sh -- a guest whose disk is a block device (a loop device here; LVM and
# multipath volumes are block devices too) is backed up while it runs and restored in place
# over the device itself: the device, damaged after the backup, holds the backup again byte
# for byte (zeros of the backup written as zeros), and the guest boots from it with its data.
# A corrupt chunk is refused before a byte is written; a device now smaller than the backed-up
# disk is refused before a byte is written; a qcow2 restore onto the device is refused.
set -euo pipefail
. "$VS_SOURCE_ROOT/tests/lib/harness.sh"

vs_test_open --libvirt rbl

vs_guest_disk "$W/disk.raw" 96M >/dev/null
DEV=$(vs_loopdev "$W/lo.img" 96M)
dd if="$W/disk.raw" of="$DEV" bs=1M conv=fsync status=none
VS_VDA_XML="<disk type='block' device='disk'><driver name='qemu' type='raw' cache='none'/>
  <source dev='$DEV'/><target dev='vda' bus='virtio'/></disk>" vs_guest_start "$D" "$W/unused.img"
vs_gexec "$D" 'dd if=/dev/urandom of=/data/big bs=1M count=8 2>/dev/null && sync' >/dev/null
sum=$(vs_gexec "$D" 'md5sum /data/big' | awk '{print $1}')

vs_virtsnap backup --repo "$REPO" --init --state-dir "$STATE" --json "$D" > "$W/b.json"
cat "$W/b.json" >&2
vs_assert_eq "$(jq -r '.domains[0] | [.ok, .consistency] | map(tostring) | join(",")' "$W/b.json")" "true,quiesced" "backup of the guest on $DEV"
ID=$(jq -r .id "$W/b.json")
vs_assert_eq "$(virsh domblklist "$D" --details | awk '$3 == "vda" {print $4}')" "$DEV" "the guest back on its device"
virsh destroy "$D" >/dev/null
vs_virtsnap export --repo "$REPO" "$ID" "$D" vda "$W/backup.raw" --format raw >/dev/null
"$VS_GUEST_SRC/verify-backup.sh" "$W/backup.raw" >&2 || vs_fail "the backup does not verify"

# damage the device: data over what the backup has as data and as zeros
dd if=/dev/urandom of="$DEV" bs=1M seek=4 count=8 conv=fsync status=none
dd if=/dev/urandom of="$DEV" bs=1M seek=88 count=8 conv=fsync status=none
sum_damaged=$(md5sum < "$DEV")

# a corrupt chunk: refused, nothing written
cp -a "$REPO" "$W/repo-bad"
chunk=$(jq -r '.domains[0].disks[0].chunks[-1][2]' "$REPO/backups/$ID.json")
f=$W/repo-bad/chunks/${chunk:0:2}/$chunk
printf '\x5a' | dd of="$f" bs=1 seek=$(( $(stat -c %s "$f") / 2 )) conv=notrunc 2>/dev/null
set +e
out=$(vs_virtsnap restore --repo "$W/repo-bad" --state-dir "$STATE" "$D" 2>&1); rc=$?
set -e
vs_assert_eq "$rc" 1 "restore with a corrupt chunk"
vs_assert_contains "$out" "$chunk" "the corrupt chunk named"
vs_assert_eq "$(md5sum < "$DEV")" "$sum_damaged" "the device untouched by the refused restore"

# a qcow2 onto the device: refused
set +e
out=$(vs_virtsnap restore --repo "$REPO" --state-dir "$STATE" --format qcow2 --define "$D" 2>&1); rc=$?
set -e
vs_assert_eq "$rc" 1 "restore as qcow2 onto a block device"
vs_assert_contains "$out" "written over in place in the disk's own format (raw or qcow2), not as qcow2" "says why"

# the real one: in place, then started
vs_virtsnap restore --repo "$REPO" --state-dir "$STATE" --json --start "$D" > "$W/r.json"
cat "$W/r.json" >&2
vs_assert_eq "$(jq -r '.domains[0].disks[0] | [.action, .path] | join(",")' "$W/r.json")" "rewritten,$DEV" "the device rewritten in place"
cmp "$DEV" "$W/backup.raw" || vs_fail "the device does not hold the backup after restore"
vs_wait_agent "$D" 120
vs_assert_eq "$(virsh domblklist "$D" --details | awk '$3 == "vda" {print $4}')" "$DEV" "the restored guest runs on its device"
vs_assert_eq "$(vs_gexec "$D" 'md5sum /data/big' | awk '{print $1}')" "$sum" "data in the restored guest"
virsh destroy "$D" >/dev/null

# the device now smaller than the backed-up disk: refused before a byte is written
losetup -d "$DEV"
truncate -s 64M "$W/small.img"
dd if=/dev/urandom of="$W/small.img" bs=1M count=2 conv=notrunc status=none
losetup "$DEV" "$W/small.img"
vs_on_exit losetup -d "$DEV"
sum_small=$(md5sum < "$W/small.img")
set +e
out=$(vs_virtsnap restore --repo "$REPO" --state-dir "$STATE" "$D" 2>&1); rc=$?
set -e
vs_assert_eq "$rc" 1 "restore onto a smaller device"
vs_assert_contains "$out" "$DEV" "the device named"
echo "$out" >&2
vs_assert_eq "$(md5sum < "$W/small.img")" "$sum_small" "the smaller device untouched"
vs_log "restore-block: all checks passed"
