#!/bin/bash
# iscsi-tgt-hook.sh OP -- a virtsnap storage snapshot hook (contract: block/include/vs-snapshot.h,
# docs/snapshots.md) for the loopback tgt iSCSI target of the tests (tests/targets/iscsi-target.sh):
# a snapshot is a reflinked copy of the LUN's backing file (a full copy where the file system cannot
# reflink) exported read-only as a new LUN of the same target. Tested by
# tests/block/snapshot/snapshot-iscsi-hook.sh.
#
# VIRTSNAP_HOOK_CONFIG names a file of KEY=VALUE lines (read, never sourced):
#   TARGET_DIR=DIR        the target's state directory (iscsi-target.sh start DIR)
#   TARGET_SCRIPT=PATH    iscsi-target.sh
# Handles: LABEL@lunN (N: the snapshot's LUN). Clones: a writable LUN from a reflinked copy.
set -euo pipefail
die() { echo "iscsi-tgt-hook: ${VIRTSNAP_SNAP_OP:-?}: $*" >&2; exit "${2:-1}"; }

op=${1:-}
cfg=${VIRTSNAP_HOOK_CONFIG:-}
[ -n "$cfg" ] && [ -f "$cfg" ] || die "VIRTSNAP_HOOK_CONFIG does not name a file"
DIR=; SCRIPT=
while IFS='=' read -r k v; do
  case "$k" in TARGET_DIR) DIR=$v ;; TARGET_SCRIPT) SCRIPT=$v ;; esac
done < "$cfg"
[ -d "$DIR" ] && [ -x "$SCRIPT" ] || die "$cfg: TARGET_DIR and TARGET_SCRIPT must name the target's directory and script"
[ "${VIRTSNAP_DISK_KIND:-}" = iscsi ] || die "only iSCSI disks (this is a ${VIRTSNAP_DISK_KIND:-?} disk)" 3
export TGT_IPC_SOCKET=$DIR/tgtd.sock
if mountpoint -q "$DIR/store" 2>/dev/null; then STORE=$DIR/store; else STORE=$DIR; fi
tgt() { tgtadm -C 0 --lld iscsi "$@"; }
has_lun() { tgt --mode target --op show | grep -qx " *LUN: $1"; }
url() { echo "url=iscsi://$VIRTSNAP_ISCSI_PORTAL/$VIRTSNAP_ISCSI_IQN/$1"; }
src=${VIRTSNAP_ISCSI_LUN:-}
[[ "$src" =~ ^[0-9]+$ ]] || die "no VIRTSNAP_ISCSI_LUN"

# The snapshot's LUN and file from the handle (checked: it came back from a repository).
snap_of() {
  local h=${VIRTSNAP_SNAP_HANDLE:-}
  [[ "$h" =~ @lun([0-9]+)$ ]] || die "handle '$h' is not LABEL@lunN"
  SLUN=${BASH_REMATCH[1]}
  SFILE=$STORE/snap-$src-$SLUN.img
}

case "$op" in
create)
  out=$("$SCRIPT" snapshot "$DIR" "$src") || die "iscsi-target.sh snapshot failed"
  lun=$(sed -n 's/^ISCSI_SNAP_LUN=//p' <<<"$out")
  [ -n "$lun" ] || die "iscsi-target.sh printed no ISCSI_SNAP_LUN"
  echo "handle=$VIRTSNAP_SNAP_LABEL@lun$lun" ;;
expose)
  snap_of; has_lun "$SLUN" || die "no LUN $SLUN"
  url "$SLUN" ;;
exists)
  snap_of
  if has_lun "$SLUN" && [ -f "$SFILE" ]; then echo exists=yes; else echo exists=no; fi ;;
delete)
  snap_of
  has_lun "$SLUN" || [ -f "$SFILE" ] || die "no snapshot LUN $SLUN"
  ! has_lun "$SLUN" || tgt --mode logicalunit --op delete --tid 1 --lun "$SLUN"
  rm -f "$SFILE" ;;
rollback)
  snap_of; [ -f "$SFILE" ] || die "no snapshot file for LUN $SLUN"
  # In place: tgtd keeps the LUN's file open, so the same inode gets the bytes.
  cp --reflink=auto "$SFILE" "$STORE/lun$src.img" ;;
clone)
  snap_of; [ -f "$SFILE" ] || die "no snapshot file for LUN $SLUN"
  [[ "${VIRTSNAP_CLONE_NAME:-}" =~ ^[A-Za-z0-9._-]+$ ]] || die "bad clone name"
  f=$STORE/clone-$VIRTSNAP_CLONE_NAME.img
  [ ! -e "$f" ] || die "$f exists"
  cp --reflink=auto "$SFILE" "$f"
  lun=$(tgt --mode target --op show | sed -n 's/^ *LUN: \([0-9]*\)$/\1/p' | sort -n | tail -1)
  lun=$((lun + 1))
  tgt --mode logicalunit --op new --tid 1 --lun "$lun" --backing-store "$f"
  url "$lun" ;;
locate)
  # the "array" is the target's host, the "volume" the LUN's backing file
  echo "controller=${VIRTSNAP_ISCSI_PORTAL%:*}"
  echo "volume=$STORE/lun$src.img" ;;
*) die "operation '$op' not supported" 3 ;;
esac
