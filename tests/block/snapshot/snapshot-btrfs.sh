#!/usr/bin/env bash
# snapshot-btrfs: the btrfs provider (block/snapshot/snapshot-btrfs.c) on a real btrfs (a
# loop-mounted file) whose pool directory is a subvolume, through snapio: `auto` picks it, a
# snapshot is a read-only subvolume snapshot that keeps the disk's bytes while the disk changes,
# clone and rollback (same inode) give them back, delete removes the subvolume; a directory
# that is not a subvolume, hostile handles and a plain directory posing as a snapshot are
# refused with clear errors.
. "$VS_SOURCE_ROOT/tests/lib/harness.sh"
vs_require_root
command -v mkfs.btrfs >/dev/null || vs_skip "mkfs.btrfs missing (btrfs-progs; scripts/deps.sh --test)"
grep -qw btrfs /proc/filesystems || vs_skip "no btrfs in this kernel"
SNAPIO=${SNAPIO:-$VS_BUILD_ROOT/tests/block/snapshot/snapio}
W=$(vs_workdir)
M=$W/btrfs

truncate -s 1G "$W/btrfs.img"
mkfs.btrfs -q "$W/btrfs.img"
mkdir -p "$M"
vs_on_exit umount "$M"
mount -o loop "$W/btrfs.img" "$M"
btrfs -q subvolume create "$M/pool"
mkdir -p "$M/base" "$M/plain"
DISK=$M/pool/vm1-vda.img
head -c 32M /dev/urandom > "$DISK"
echo other > "$M/pool/other-disk.img"
sync

snap() { "$SNAPIO" --btrfs "$M/base" --disk vm1/vda --path "$DISK" "$@"; }
sha() { sha256sum "$1" | cut -d' ' -f1; }
fails() {
  local needle=$1 out rc=0; shift
  out=$("$@" 2>&1) || rc=$?
  [ "$rc" = 1 ] || vs_fail "expected exit 1 from $*, got $rc: $out"
  vs_assert_contains "$out" "$needle" "${*:2}"
}

vs_assert_eq "$("$SNAPIO" --reflink "$M/base" --path "$DISK" provider)" btrfs "auto on a subvolume"
vs_assert_eq "$("$SNAPIO" --reflink "$M/base" --path "$M/plain/x.img" provider)" reflink "auto on a plain directory"
SHA0=$(sha "$DISK")
INODE=$(stat -c %i "$DISK")
H=$(snap create b1-vda) || vs_fail "create failed"
vs_assert_eq "$H" b1-vda "handle"
S=$M/base/virtsnap-snapshots/b1-vda
btrfs subvolume show "$S" | grep -q 'Flags:.*readonly' || vs_fail "$S is not a read-only subvolume"
vs_log "ok: $S is a read-only subvolume snapshot"
vs_assert_eq "$(cat "$S/other-disk.img")" other "the whole pool is in the snapshot"

dd if=/dev/urandom of="$DISK" bs=1M seek=3 count=2 conv=notrunc status=none
[ "$(sha "$DISK")" != "$SHA0" ] || vs_fail "the disk did not change"
read -r s size < <(snap sha "$H") || vs_fail "sha of the snapshot failed"
vs_assert_eq "$s" "$SHA0" "snapshot bytes after the disk changed"
vs_assert_eq "$size" $((32 << 20)) "snapshot size"
vs_assert_eq "$(snap expose "$H")" "$S/vm1-vda.img" "expose"
vs_assert_eq "$(snap exists "$H")" yes "exists"
fails "a snapshot of that label exists already" snap create b1-vda

C=$(snap clone "$H" vm1-clone.img) || vs_fail "clone failed"
vs_assert_eq "$C" "$M/pool/vm1-clone.img" "clone path"
vs_assert_eq "$(sha "$C")" "$SHA0" "clone bytes"
snap rollback "$H" || vs_fail "rollback failed"
vs_assert_eq "$(sha "$DISK")" "$SHA0" "disk after rollback"
vs_assert_eq "$(stat -c %i "$DISK")" "$INODE" "disk inode after rollback"

mkdir "$M/base/virtsnap-snapshots/fake"
vs_assert_eq "$(snap exists fake)" no "a plain directory is not a snapshot"
fails "fake in $M/base/virtsnap-snapshots: not a subvolume snapshot" snap delete fake
fails "handle \"../pool\" is not valid" snap delete ../pool
btrfs subvolume show "$M/pool" >/dev/null || vs_fail "the pool subvolume is gone"

snap delete "$H" || vs_fail "delete failed"
vs_assert_eq "$(snap exists "$H")" no "exists after delete"
[ ! -e "$S" ] || vs_fail "$S still there"
fails "No such file or directory" snap delete "$H"

head -c 1M /dev/urandom > "$M/plain/x.img"
fails "the disk's directory $M/plain: not a btrfs subvolume" \
  "$SNAPIO" --btrfs "$M/base" --disk vm1/vdb --path "$M/plain/x.img" create b2-vdb
vs_log "PASS"
