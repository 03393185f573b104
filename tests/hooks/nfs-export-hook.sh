#!/bin/bash
# nfs-export-hook.sh OP -- a virtsnap storage snapshot hook (contract: block/include/vs-snapshot.h,
# docs/snapshots.md) for an NFS server whose export this host can reach as a directory: the loopback
# nfs-ganesha of the tests (tests/targets/nfs-target.sh), as a NAS's own snapshot would be made on the
# NAS. A snapshot is a reflinked copy (a full copy where the file system cannot reflink) of the disk's
# file in EXPORT_DIR/.virtsnap-snapshots/, read by virtsnap over NFS (url=nfs://...). Tested by
# tests/integration/backup-storage-pools.sh (a netfs pool).
#
# VIRTSNAP_HOOK_CONFIG names a file of KEY=VALUE lines (read, never sourced):
#   EXPORT_DIR=DIR      the directory the export serves
#   EXPORT=/export      the export's path as clients name it
# Handles: the label. Clones: a new file beside the disk's, as url=nfs://...
set -euo pipefail
die() { echo "nfs-export-hook: ${VIRTSNAP_SNAP_OP:-?}: $*" >&2; exit "${2:-1}"; }

op=${1:-}
cfg=${VIRTSNAP_HOOK_CONFIG:-}
[ -n "$cfg" ] && [ -f "$cfg" ] || die "VIRTSNAP_HOOK_CONFIG does not name a file"
DIR=; EXPORT=
while IFS='=' read -r k v; do
  case "$k" in EXPORT_DIR) DIR=$v ;; EXPORT) EXPORT=$v ;; esac
done < "$cfg"
[ -d "$DIR" ] && [ -n "$EXPORT" ] || die "$cfg: EXPORT_DIR and EXPORT must name the export's directory and path"
[ "${VIRTSNAP_DISK_KIND:-}" = nfs ] || die "only NFS disks (this is a ${VIRTSNAP_DISK_KIND:-?} disk)" 3
[ "${VIRTSNAP_NFS_EXPORT:-}" = "$EXPORT" ] || die "the disk is on export ${VIRTSNAP_NFS_EXPORT:-?}, not $EXPORT" 3
rel=${VIRTSNAP_NFS_PATH:-}
[[ "$rel" =~ ^/[A-Za-z0-9._/-]+$ && "$rel" != *..* ]] || die "bad NFS path '$rel'"
file=$DIR$rel
SNAPS=$DIR/.virtsnap-snapshots
url() { echo "url=nfs://$VIRTSNAP_NFS_SERVER$EXPORT$1"; }
snap_of() {
  local h=${VIRTSNAP_SNAP_HANDLE:-}
  [[ "$h" =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] || die "bad handle '$h'"
  SFILE=$SNAPS/$h
}

case "$op" in
create)
  [ -f "$file" ] || die "no file $file"
  [[ "${VIRTSNAP_SNAP_LABEL:-}" =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] || die "bad label"
  mkdir -p -m 0755 "$SNAPS"
  [ ! -e "$SNAPS/$VIRTSNAP_SNAP_LABEL" ] || die "snapshot $VIRTSNAP_SNAP_LABEL exists"
  cp --reflink=auto --sparse=always "$file" "$SNAPS/$VIRTSNAP_SNAP_LABEL.tmp"
  mv "$SNAPS/$VIRTSNAP_SNAP_LABEL.tmp" "$SNAPS/$VIRTSNAP_SNAP_LABEL"
  echo "handle=$VIRTSNAP_SNAP_LABEL" ;;
expose)
  snap_of; [ -f "$SFILE" ] || die "no snapshot $SFILE"
  url "/.virtsnap-snapshots/${SFILE##*/}" ;;
exists)
  snap_of
  if [ -f "$SFILE" ]; then echo exists=yes; else echo exists=no; fi ;;
delete)
  snap_of; [ -f "$SFILE" ] || die "no snapshot $SFILE"
  rm -f "$SFILE" ;;
rollback)
  snap_of; [ -f "$SFILE" ] || die "no snapshot $SFILE"
  cp --reflink=auto "$SFILE" "$file" ;;
clone)
  snap_of; [ -f "$SFILE" ] || die "no snapshot $SFILE"
  [[ "${VIRTSNAP_CLONE_NAME:-}" =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] || die "bad clone name"
  f=$(dirname "$file")/$VIRTSNAP_CLONE_NAME
  [ ! -e "$f" ] || die "$f exists"
  cp --reflink=auto --sparse=always "$SFILE" "$f"
  url "$(dirname "$rel")/$VIRTSNAP_CLONE_NAME" ;;
*) die "operation '$op' not supported" 3 ;;
esac
