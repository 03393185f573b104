#!/bin/bash
# backup-storage-pools.sh -- `backup --storage-snapshot` (auto) across the libvirt pool types a
# KVM host keeps its disks in (issue 15), one running guest with a disk in each: vda, the data
# disk the guest writes, a volume of a dir pool on a loop-mounted XFS made with reflink (auto
# picks reflink); vdb, a file of a netfs pool served by the real nfs-ganesha (the hook
# tests/hooks/nfs-export-hook.sh, as a NAS would, configured for that pool in the snapshot
# configuration); vdc, a LUN of an iscsi-direct pool on the real tgtd (the shipped
# tests/hooks/iscsi-tgt-hook.sh for that pool). One point in time for all three: each disk's
# provider is the one its pool's configuration says, the copy of vda is quiesced (fsck clean,
# records valid), vdb and vdc read back equal to their files, the kept snapshots are what was
# copied, and the guest runs on its own disks with nothing left. mpath and the kernel iscsi
# pool cannot run here (no device-mapper, no kernel initiator): a hook serves them the same way.
set -euo pipefail
. "$VS_SOURCE_ROOT/tests/lib/harness.sh"

vs_test_open --libvirt
command -v mkfs.xfs >/dev/null || vs_skip "mkfs.xfs missing (xfsprogs; scripts/deps.sh --test)"
vs_iscsi_direct_ok || vs_skip "libvirtd has no iscsi-direct storage backend (scripts/deps.sh --test installs it)"
P=vst-bsp-$$
vs_virtsnap init --repo "$REPO" >/dev/null

# --- a dir pool on XFS with reflink ------------------------------------------------------------
X=$W/xfs
truncate -s 2G "$W/xfs.img"
mkfs.xfs -q -m reflink=1 "$W/xfs.img"
mkdir -p "$X"
vs_on_exit umount -l "$X"
mount -o loop "$W/xfs.img" "$X"
mkdir -p "$X/pool"
vs_guest_disk "$X/pool/data.qcow2" >/dev/null
cat > "$W/dirpool.xml" <<EOF
<pool type='dir'><name>$P-dir</name><target><path>$X/pool</path></target></pool>
EOF
vs_define_pool "$W/dirpool.xml"

# --- a netfs pool on nfs-ganesha ---------------------------------------------------------------
vs_nfs_start netfs
head -c 24M /dev/urandom > "$NFS_EXPORT_DIR/nfsdisk.raw"
chmod 666 "$NFS_EXPORT_DIR/nfsdisk.raw"
cat > "$W/nfspool.xml" <<EOF
<pool type='netfs'><name>$P-nfs</name>
  <source><host name='127.0.0.1'/><dir path='/export'/><format type='nfs'/></source>
  <target><path>$NFS_NETFS_TARGET</path></target></pool>
EOF
vs_define_pool "$W/nfspool.xml"

# --- an iscsi-direct pool on tgtd --------------------------------------------------------------
mkdir -p "$W/iscsi"
head -c 32M /dev/urandom > "$W/iscsi/lun1.img"
vs_iscsi_start
LUNFILE=$VS_ISCSI_DIR/lun1.img
[ -f "$VS_ISCSI_DIR/store/lun1.img" ] && LUNFILE=$VS_ISCSI_DIR/store/lun1.img
cat > "$W/iscsipool.xml" <<EOF
<pool type='iscsi-direct'><name>$P-iscsi</name>
  <source><host name='127.0.0.1' port='${ISCSI_PORTAL##*:}'/><device path='$ISCSI_IQN'/>
    <initiator><iqn name='iqn.2024-01.test.virtsnap:initiator'/></initiator></source>
</pool>
EOF
vs_define_pool "$W/iscsipool.xml"

# --- the snapshot configuration: a hook per pool ---------------------------------------------
printf 'EXPORT_DIR=%s\nEXPORT=/export\n' "$NFS_EXPORT_DIR" > "$W/nfs-hook.conf"
printf 'TARGET_DIR=%s\nTARGET_SCRIPT=%s\n' "$VS_ISCSI_DIR" "$VS_TARGETS_SRC/iscsi-target.sh" > "$W/iscsi-hook.conf"
cat > "$W/snapshots.conf" <<EOF
[pool:$P-nfs]
hook=$VS_SOURCE_ROOT/tests/hooks/nfs-export-hook.sh
hook-config=$W/nfs-hook.conf
timeout=60

[pool:$P-iscsi]
hook=$VS_SOURCE_ROOT/tests/hooks/iscsi-tgt-hook.sh
hook-config=$W/iscsi-hook.conf
timeout=60
EOF
chmod 600 "$W/snapshots.conf" "$W/nfs-hook.conf" "$W/iscsi-hook.conf"

# --- the guest ----------------------------------------------------------------------------------
D=$P-vm
VS_VDA_XML="<disk type='volume' device='disk'><driver name='qemu' type='qcow2'/>
  <source pool='$P-dir' volume='data.qcow2'/><target dev='vda' bus='virtio'/></disk>" \
vs_guest_start "$D" "$W/unused.img" "<disk type='file' device='disk'><driver name='qemu' type='raw'/>
  <source file='$NFS_NETFS_TARGET/nfsdisk.raw'/><target dev='vdb' bus='virtio'/></disk>
<disk type='volume' device='disk'><driver name='qemu' type='raw'/>
  <source pool='$P-iscsi' volume='unit:0:0:1'/><target dev='vdc' bus='virtio'/></disk>"

vs_virtsnap backup --repo "$REPO" --state-dir "$STATE" --storage-snapshot --keep-snapshot \
  --snapshot-config "$W/snapshots.conf" --json "$D" > "$W/b.json" || { cat "$W/b.json" >&2; vs_fail "backup failed"; }
cat "$W/b.json" >&2
vs_assert_eq "$(jq -r '.domains[0] | [.ok, .consistency, .mode] | map(tostring) | join(",")' "$W/b.json")" \
  "true,quiesced,storage-snapshot" "the backup"
vs_assert_eq "$(jq -r '[.domains[0].disks[] | .target + ":" + .snapshot.provider + ":" + (.snapshot.kept|tostring)] | join(" ")' "$W/b.json")" \
  "vda:reflink:true vdb:hook:true vdc:hook:true" "each disk's provider, as its pool's configuration says"
ID=$(jq -r .id "$W/b.json")

# The guest on its own disks, nothing left behind.
vs_assert_eq "$(virsh domstate "$D" | head -1)" running "domain state"
vs_assert_eq "$(virsh dumpxml "$D" | xmllint --xpath "string(//disk[target/@dev='vda']/@type)" -) $(virsh dumpxml "$D" | xmllint --xpath "string(//disk[target/@dev='vda']/source/@volume)" -)" \
  "volume data.qcow2" "vda after: the dir pool's volume again"
vs_assert_eq "$(virsh domblklist "$D" --details | awk '$3 == "vdb" {print $4}')" "$NFS_NETFS_TARGET/nfsdisk.raw" "vdb after"
vs_assert_eq "$(ls "$STATE/journal" 2>/dev/null | wc -l)" 0 "journals left"
vs_assert_eq "$(virsh dumpxml "$D" | xmllint --xpath 'count(//disk/backingStore/source)' -)" 0 "no overlay left"

# The data: vda a quiesced copy; vdb and vdc (not written by the guest) equal to their files.
vs_virtsnap verify --repo "$REPO" "$ID"
vs_virtsnap export --repo "$REPO" "$ID" "$D" vda "$W/vda.qcow2"
"$VS_GUEST_SRC/verify-backup.sh" "$W/vda.qcow2" || vs_fail "vda is not a consistent copy"
qemu-img compare -q "$W/vda.qcow2" "$X/pool/virtsnap-snapshots/virtsnap-$ID-vda" ||
  vs_fail "vda's copy differs from its kept reflink snapshot"
vs_virtsnap export --repo "$REPO" "$ID" "$D" vdb "$W/vdb.raw" --format raw
cmp "$W/vdb.raw" "$NFS_EXPORT_DIR/nfsdisk.raw" || vs_fail "vdb (netfs, hook) differs from its file"
cmp "$W/vdb.raw" "$NFS_EXPORT_DIR/.virtsnap-snapshots/virtsnap-$ID-vdb" || vs_fail "vdb differs from its kept snapshot"
vs_virtsnap export --repo "$REPO" "$ID" "$D" vdc "$W/vdc.raw" --format raw
cmp "$W/vdc.raw" "$LUNFILE" || vs_fail "vdc (iscsi-direct, hook) differs from its LUN"
vs_assert_contains "$(jq -r '.domains[0].disks[2].snapshot.handle' "$W/b.json")" "virtsnap-$ID-vdc@lun" "vdc's handle"
vs_log "backup-storage-pools: all checks passed"
