#!/usr/bin/env bash
# snapshot-reflink: the reflink provider (block/snapshot/snapshot-reflink.c) on a real XFS
# (mkfs.xfs -m reflink=1 on a loop-mounted file), through tests/block/snapshot/snapio:
# a snapshot keeps its bytes while the disk changes, and shares its blocks (filefrag's
# "shared" flag, df not growing); clone and rollback give the snapshot's bytes (rollback in
# the disk's own inode); delete/exists; the snapshot directory is private and reached without
# symlinks; a hostile handle never touches a file; ext4 (no reflink) and a snapshot directory
# on another file system are clear errors naming the disk, leaving nothing behind.
. "$VS_SOURCE_ROOT/tests/lib/harness.sh"
vs_require_root
command -v mkfs.xfs >/dev/null || vs_skip "mkfs.xfs missing (xfsprogs; scripts/deps.sh --test)"
[ -e /dev/loop-control ] || vs_skip "no loop devices"
SNAPIO=${SNAPIO:-$VS_BUILD_ROOT/tests/block/snapshot/snapio}
W=$(vs_workdir)
M=$W/xfs

truncate -s 1G "$W/xfs.img"
mkfs.xfs -q -m reflink=1 "$W/xfs.img"
mkdir -p "$M"
vs_on_exit umount "$M"        # registered first: runs even if anything below fails
mount -o loop "$W/xfs.img" "$M"
mkdir -p "$M/pool" "$M/base"
DISK=$M/pool/vm1-vda.img
head -c 64M /dev/urandom > "$DISK"
sync

snap() { "$SNAPIO" --reflink "$M/base" --disk vm1/vda --path "$DISK" "$@"; }
sha() { sha256sum "$1" | cut -d' ' -f1; }
# fails NEEDLE CMD...: exit 1 and NEEDLE in the message
fails() {
  local needle=$1 out rc=0; shift
  out=$("$@" 2>&1) || rc=$?
  [ "$rc" = 1 ] || vs_fail "expected exit 1 from $*, got $rc: $out"
  vs_assert_contains "$out" "$needle" "$(basename "$1") ${*:2}"
}
used_kib() { df --output=used -k "$M" | tail -1 | tr -d ' '; }

SHA0=$(sha "$DISK")
INODE=$(stat -c %i "$DISK")
before=$(used_kib)
t0=$(date +%s%N)
H=$(snap create b1-vda) || vs_fail "create failed"
vs_log "create took $(( ($(date +%s%N) - t0) / 1000000 )) ms"
sync
vs_assert_eq "$H" "b1-vda" "handle"
vs_assert_eq "$(stat -c %a "$M/base/virtsnap-snapshots")" 700 "snapshot directory mode"
vs_assert_eq "$(stat -c %a "$M/base/virtsnap-snapshots/b1-vda")" 600 "snapshot file mode"
grew=$(( $(used_kib) - before ))
[ "$grew" -lt 1024 ] || vs_fail "a 64 MiB snapshot took $grew KiB: not shared"
vs_log "ok: df grew by $grew KiB for a 64 MiB snapshot"
filefrag -v "$M/base/virtsnap-snapshots/b1-vda" | grep -q shared || vs_fail "snapshot extents not flagged shared"
filefrag -v "$DISK" | grep -q shared || vs_fail "disk extents not flagged shared"
vs_log "ok: filefrag flags both files' extents shared"

# the disk changes; the snapshot does not
dd if=/dev/urandom of="$DISK" bs=1M seek=8 count=2 conv=notrunc status=none
sync
[ "$(sha "$DISK")" != "$SHA0" ] || vs_fail "the disk did not change"
read -r s size < <(snap sha "$H") || vs_fail "sha of the snapshot failed"
vs_assert_eq "$s" "$SHA0" "snapshot bytes after the disk changed (read through vs_snap_open)"
vs_assert_eq "$size" $((64 << 20)) "snapshot size"
vs_assert_eq "$(snap expose "$H")" "$M/base/virtsnap-snapshots/b1-vda" "expose"
vs_assert_eq "$(snap exists "$H")" yes "exists"
vs_assert_eq "$(snap exists b9-vda)" no "exists (never made)"
fails "create: b1-vda: File exists: a snapshot of that label exists already" snap create b1-vda

# clone: a new file beside the disk, the snapshot's bytes, independent of it
C=$(snap clone "$H" vm1-clone.img) || vs_fail "clone failed"
vs_assert_eq "$C" "$M/pool/vm1-clone.img" "clone path"
vs_assert_eq "$(sha "$C")" "$SHA0" "clone bytes"
filefrag -v "$C" | grep -q shared || vs_fail "clone extents not shared"
dd if=/dev/zero of="$C" bs=1M count=1 conv=notrunc status=none
read -r s _ < <(snap sha "$H")
vs_assert_eq "$s" "$SHA0" "snapshot after the clone was written"
fails "File exists" snap clone "$H" vm1-clone.img
fails "clone name \"../vm1-vda.img\" is not valid" snap clone "$H" ../vm1-vda.img

# rollback: the disk's own inode gets the snapshot's bytes back, also after growing
head -c 1M /dev/urandom >> "$DISK"
snap rollback "$H" || vs_fail "rollback failed"
vs_assert_eq "$(sha "$DISK")" "$SHA0" "disk bytes after rollback"
vs_assert_eq "$(stat -c %i "$DISK")" "$INODE" "disk inode after rollback"

# hostile handles never reach the file system
fails "handle \"../pool/vm1-vda.img\" is not valid" snap delete ../pool/vm1-vda.img
fails "is not valid" snap rollback .hidden
[ -f "$DISK" ] || vs_fail "the disk is gone"
ln -s "$DISK" "$M/base/virtsnap-snapshots/evil"
fails "snapshot evil in $M/base/virtsnap-snapshots: Too many levels of symbolic links" snap rollback evil
vs_assert_eq "$(snap exists evil)" no "a symlink is not a snapshot"
rm "$M/base/virtsnap-snapshots/evil"

# delete
snap delete "$H" || vs_fail "delete failed"
vs_assert_eq "$(snap exists "$H")" no "exists after delete"
fails "delete: b1-vda in $M/base/virtsnap-snapshots: No such file or directory" snap delete "$H"

# a snapshot deleted by hand under a backup that needs it: a clear error, and exists says so
snap create b2-vda >/dev/null
rm "$M/base/virtsnap-snapshots/b2-vda"
fails "snapshot: vm1/vda: expose: snapshot b2-vda in $M/base/virtsnap-snapshots: No such file or directory" snap sha b2-vda
vs_assert_eq "$(snap exists b2-vda)" no "exists after a delete by hand"

# the snapshot directory: reached without symlinks, private
ln -s "$M/base" "$M/link"
fails "a symlink or a non-directory on the way" "$SNAPIO" --reflink "$M/link" --path "$DISK" exists x
mkdir -p "$M/base2"; ln -s "$M/pool" "$M/base2/virtsnap-snapshots"
fails "a symlink or a non-directory on the way" "$SNAPIO" --reflink "$M/base2" --path "$DISK" exists x
chmod 755 "$M/base/virtsnap-snapshots"
fails "not a private directory" snap exists x
chmod 700 "$M/base/virtsnap-snapshots"

# no reflink: a disk on ext4 (the work dir), snapshot directory there too, or on the XFS
[ "$(stat -f -c %T "$W")" != xfs ] || vs_skip "the work dir is on XFS: no non-reflink file system to test"
head -c 4M /dev/urandom > "$W/ext4-vda.img"
mkdir -p "$W/base"
fails "snapshot: vm9/vdb: create: reflink between $W/ext4-vda.img and $W/base/virtsnap-snapshots: Operation not supported: the file system cannot reflink" \
  "$SNAPIO" --reflink "$W/base" --disk vm9/vdb --path "$W/ext4-vda.img" create b1-vdb
vs_assert_eq "$(ls -A "$W/base/virtsnap-snapshots")" "" "nothing left after the failed create"
fails "snapshot directory is on another file system than the disk" \
  "$SNAPIO" --reflink "$M/base" --disk vm9/vdb --path "$W/ext4-vda.img" create b1-vdb
vs_assert_eq "$(ls -A "$M/base/virtsnap-snapshots")" "" "nothing left after the cross-device create"
vs_log "PASS"
