#!/bin/bash
# vault.sh -- `virtsnap vault` end to end (issue 15): a real guest whose qcow2 disk lives on a
# loop-mounted XFS made with reflink is backed up with `backup --storage-snapshot --no-copy`
# (the backup is the reflink snapshot, in_repo false); the guest goes on writing; `vault`
# copies the snapshot in (read through its qcow2 map, as the guest saw it), the manifest
# says in_repo, the export equals the snapshot (qemu-img compare) and is a consistent image,
# verify passes, the snapshot stays. A vault killed with SIGKILL half way leaves that
# backup snapshot-only (recover has nothing to undo, the snapshot is kept) and a second one
# completes; gc then leaves every backup verifiable.
set -euo pipefail
. "$VS_SOURCE_ROOT/tests/lib/harness.sh"

vs_test_open --libvirt vlt
command -v mkfs.xfs >/dev/null || vs_skip "mkfs.xfs missing (xfsprogs; scripts/deps.sh --test)"
[ -e /dev/loop-control ] || vs_skip "no loop devices"

M=$W/xfs
truncate -s 3G "$W/xfs.img"
mkfs.xfs -q -m reflink=1 "$W/xfs.img"
mkdir -p "$M"
vs_on_exit umount -l "$M"      # registered before the guest: its cleanup runs after the guest's
mount -o loop "$W/xfs.img" "$M"
vs_guest_disk "$M/disk.qcow2" >/dev/null
vs_guest_start "$D" "$M/disk.qcow2"
SNAPS=$M/virtsnap-snapshots
in_repo() { jq -r '.domains[0].disks[0] | if has("in_repo") then .in_repo else true end' "$REPO/backups/$1.json"; }

vs_gexec "$D" 'dd if=/dev/urandom of=/data/bulk bs=1M count=24 conv=fsync 2>/dev/null' >/dev/null
vs_virtsnap backup --repo "$REPO" --init --state-dir "$STATE" --storage-snapshot=reflink --no-copy --json "$D" \
  > "$W/b1.json"
ID1=$(jq -r .id "$W/b1.json")
vs_assert_eq "$(in_repo "$ID1")" false "--no-copy: snapshot-only"
[ -f "$SNAPS/virtsnap-$ID1-vda" ] || vs_fail "no snapshot for $ID1"
# the guest goes on writing: vault reads the snapshot, not the disk
vs_gexec "$D" 'dd if=/dev/urandom of=/data/later bs=1M count=8 conv=fsync 2>/dev/null' >/dev/null

out=$(vs_virtsnap vault --repo "$REPO" --json "$ID1") || vs_fail "vault: $out"
echo "$out" >&2
vs_assert_eq "$(jq -r '.vaulted, .disks[0].state, .disks[0].snapshot.handle, .disks[0].incremental' <<<"$out" | tr '\n' ' ')" \
  "1 vaulted virtsnap-$ID1-vda false " "vault result"
vs_assert_eq "$(in_repo "$ID1")" true "in_repo after vault"
[ -f "$SNAPS/virtsnap-$ID1-vda" ] || vs_fail "vault removed the snapshot"
vs_virtsnap export --repo "$REPO" "$ID1" "$D" vda "$W/e1.qcow2"
qemu-img compare -q "$W/e1.qcow2" "$SNAPS/virtsnap-$ID1-vda" || vs_fail "the vaulted disk and its snapshot differ"
"$VS_GUEST_SRC/verify-backup.sh" "$W/e1.qcow2" || vs_fail "the vaulted disk is not consistent"
vs_virtsnap verify --repo "$REPO" "$ID1" >/dev/null || vs_fail "verify after vault"

# killed half way: snapshot-only still, recover has nothing to do with it, a second vault completes
vs_virtsnap backup --repo "$REPO" --state-dir "$STATE" --storage-snapshot=reflink --no-copy --json "$D" > "$W/b2.json"
ID2=$(jq -r .id "$W/b2.json")
rc=0
VIRTSNAP_FAULT=vault-copy vs_virtsnap vault --repo "$REPO" "$ID2" >/dev/null 2>&1 || rc=$?
vs_assert_eq "$rc" 137 "vault killed with SIGKILL"
vs_assert_eq "$(in_repo "$ID2")" false "snapshot-only after the kill"
vs_virtsnap recover --state-dir "$STATE" >/dev/null 2>&1 || vs_fail "recover after the killed vault"
[ -f "$SNAPS/virtsnap-$ID2-vda" ] || vs_fail "the snapshot of $ID2 is gone after the killed vault and recover"
vs_virtsnap verify --repo "$REPO" >/dev/null || vs_fail "verify after the killed vault"
out=$(vs_virtsnap vault --repo "$REPO" "$ID2") || vs_fail "second vault: $out"
vs_assert_contains "$out" "1 disk(s) vaulted" "second vault"
vs_virtsnap export --repo "$REPO" "$ID2" "$D" vda "$W/e2.qcow2"
qemu-img compare -q "$W/e2.qcow2" "$SNAPS/virtsnap-$ID2-vda" || vs_fail "the second vaulted disk and its snapshot differ"
vs_virtsnap gc --repo "$REPO" >/dev/null || vs_fail "gc"
vs_virtsnap verify --repo "$REPO" >/dev/null || vs_fail "verify after gc"
vs_log "vault: all checks passed"
