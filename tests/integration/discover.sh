#!/bin/bash
# discover.sh -- `virtsnap discover` against real libvirt storage: a dir pool with a qcow2
# chain, an iscsi-direct pool on a real tgtd target, a netfs pool served by a real
# nfs-ganesha, a loop block device, network NFS and iSCSI disks, a file on a loop-mounted
# XFS made with reflink, a cdrom; a domain that
# names a pool that does not exist; and a running guest whose agent must answer. Every
# field of --json and the whole --mapping line are checked, as are the error paths
# (unknown domain, unreadable pool, unreachable URI): each names the thing at fault,
# exits non-zero, and still reports the other domains. Each disk's snapshot_provider (the
# storage snapshot `auto` would use, issue 15) is checked against what the storage is.
set -euo pipefail
. "$VS_SOURCE_ROOT/tests/lib/harness.sh"

vs_test_open --libvirt
command -v jq >/dev/null || vs_skip "jq missing (scripts/deps.sh installs it)"
command -v mkfs.xfs >/dev/null || vs_skip "mkfs.xfs missing (xfsprogs; scripts/deps.sh --test)"
vs_iscsi_direct_ok || vs_skip "libvirtd has no iscsi-direct storage backend (scripts/deps.sh --test installs it)"
P=vst-disc-$$

# --- storage ------------------------------------------------------------------------
mkdir -p "$W/pool"
qemu-img create -q -f qcow2 "$W/pool/base.qcow2" 64M
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 "$W/pool/top.qcow2"
cat > "$W/dirpool.xml" <<EOF
<pool type='dir'><name>$P-dir</name><target><path>$W/pool</path></target></pool>
EOF
vs_define_pool "$W/dirpool.xml"

vs_iscsi_start
cat > "$W/iscsipool.xml" <<EOF
<pool type='iscsi-direct'><name>$P-iscsi</name>
  <source><host name='127.0.0.1' port='${ISCSI_PORTAL##*:}'/><device path='$ISCSI_IQN'/>
    <initiator><iqn name='iqn.2024-01.test.virtsnap:initiator'/></initiator></source>
</pool>
EOF
vs_define_pool "$W/iscsipool.xml"

vs_nfs_start netfs
qemu-img create -q -f qcow2 "$NFS_EXPORT_DIR/nfs-disk.qcow2" 32M
qemu-img create -q -f raw "$NFS_EXPORT_DIR/net.raw" 8M
cat > "$W/nfspool.xml" <<EOF
<pool type='netfs'><name>$P-nfs</name>
  <source><host name='127.0.0.1'/><dir path='/export'/><format type='nfs'/></source>
  <target><path>$NFS_NETFS_TARGET</path></target></pool>
EOF
vs_define_pool "$W/nfspool.xml"

LOOP=$(vs_loopdev "$W/loop.img" 16M)
truncate -s 1M "$W/media.iso"
XFS=$W/xfs
truncate -s 300M "$W/xfs.img"
mkfs.xfs -q -m reflink=1 "$W/xfs.img"
mkdir -p "$XFS"
vs_on_exit umount "$XFS"
mount -o loop "$W/xfs.img" "$XFS"
qemu-img create -q -f raw "$XFS/vdg.img" 8M

# --- a shut-off domain with every kind of disk ---------------------------------------
MIX=$P-mix
cat > "$W/mix.xml" <<EOF
<domain type='qemu'><name>$MIX</name><memory unit='MiB'>128</memory>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
      <source file='$W/pool/top.qcow2'/><target dev='vda' bus='virtio'/></disk>
    <disk type='volume' device='disk'><driver name='qemu' type='raw'/>
      <source pool='$P-iscsi' volume='unit:0:0:1'/><target dev='vdb' bus='virtio'/></disk>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
      <source file='$NFS_NETFS_TARGET/nfs-disk.qcow2'/><target dev='vdc' bus='virtio'/></disk>
    <disk type='block' device='disk'><driver name='qemu' type='raw'/>
      <source dev='$LOOP'/><target dev='vdd' bus='virtio'/></disk>
    <disk type='network' device='disk'><driver name='qemu' type='raw'/>
      <source protocol='nfs' name='/export/net.raw'><host name='127.0.0.1'/></source>
      <target dev='vde' bus='virtio'/></disk>
    <disk type='network' device='disk'><driver name='qemu' type='raw'/>
      <source protocol='iscsi' name='$ISCSI_IQN/1'><host name='127.0.0.1' port='${ISCSI_PORTAL##*:}'/></source>
      <target dev='vdf' bus='virtio'/></disk>
    <disk type='file' device='disk'><driver name='qemu' type='raw'/>
      <source file='$XFS/vdg.img'/><target dev='vdg' bus='virtio'/></disk>
    <disk type='file' device='cdrom'><driver name='qemu' type='raw'/>
      <source file='$W/media.iso'/><target dev='sda' bus='sata'/><readonly/></disk>
    <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>
  </devices></domain>
EOF
vs_domain_track "$MIX"
virsh define "$W/mix.xml" >/dev/null

out=$(vs_virtsnap discover --json "$MIX")
echo "$out" > "$W/mix.json"
q() { jq -r "$1" "$W/mix.json"; }
disk() { jq -r --arg t "$1" ".[0].disks[] | select(.target == \$t) | $2" "$W/mix.json"; }

vs_assert_eq "$(q 'length')" 1 "domains reported"
vs_assert_eq "$(q '.[0].name')" "$MIX" "name"
vs_assert_eq "$(q '.[0].uuid')" "$(virsh domuuid "$MIX" | head -1)" "uuid"
vs_assert_eq "$(q '.[0].state')" shutoff "state"
vs_assert_eq "$(q '.[0].id')" null "id of a shut-off domain"
vs_assert_eq "$(q '.[0].persistent')" true "persistent"
vs_assert_eq "$(q '.[0].agent')" configured "agent (channel, not running)"
vs_assert_eq "$(q '.[0].disks | length')" 8 "disks reported (cdrom included)"
vs_assert_eq "$(q '.[0].errors | length')" 0 "domain errors"

# vda: dir pool, found through libvirt's volume lookup, two-deep chain read from the headers
vs_assert_eq "$(disk vda '[.device,.type,.format,.path,.pool,.pool_type,.volume] | @tsv')" \
  "$(printf 'disk\tfile\tqcow2\t%s\t%s\tdir\ttop.qcow2' "$W/pool/top.qcow2" "$P-dir")" "vda"
vs_assert_eq "$(disk vda '[.backing_chain[] | .path + "|" + .format] | join(",")')" \
  "$W/pool/base.qcow2|qcow2" "vda backing chain"
vs_assert_eq "$(disk vda '.backing_chain_complete')" true "vda chain complete"
vs_assert_eq "$(disk vda '[.nfs,.iscsi,.block,.skipped,.error] | map(tostring) | join(",")')" \
  "null,null,null,null,null" "vda has no nfs/iscsi/block/skipped/error"
vs_assert_eq "$(disk vda '.incremental')" true "vda (qcow2) holds dirty bitmaps"

# vdb: volume in the iscsi-direct pool
vs_assert_eq "$(disk vdb '[.type,.format,.pool,.pool_type,.volume] | @tsv')" \
  "$(printf 'volume\traw\t%s\tiscsi-direct\tunit:0:0:1' "$P-iscsi")" "vdb"
vs_assert_eq "$(disk vdb '.iscsi | [.portal,.iqn,(.lun|tostring)] | @tsv')" \
  "$(printf '%s\t%s\t1' "$ISCSI_PORTAL" "$ISCSI_IQN")" "vdb iscsi"
vs_assert_eq "$(disk vdb '.path')" "$(virsh vol-path --pool "$P-iscsi" unit:0:0:1)" "vdb path = vol-path"
vs_assert_eq "$(disk vdb '.incremental')" false "vdb (a raw LUN) holds no bitmaps"
vs_assert_contains "$(disk vdb '.incremental_note')" "read whole at every backup" "vdb: says so"

# vdc: a plain path inside the netfs pool's target directory
vs_assert_eq "$(disk vdc '[.pool,.pool_type] | @tsv')" "$(printf '%s\tnetfs' "$P-nfs")" "vdc pool"
vs_assert_eq "$(disk vdc '.nfs | [.server,.export,.path] | @tsv')" \
  "$(printf '127.0.0.1\t/export\t/nfs-disk.qcow2')" "vdc nfs"
vs_assert_eq "$(disk vdc '.backing_chain | length')" 0 "vdc has no backing"
vs_assert_eq "$(disk vdc '.backing_chain_complete')" true "vdc chain complete"

# vdd: block device, no pool
vs_assert_eq "$(disk vdd '[.type,.path,.pool_type,.block.device,(.block.wwid|tostring)] | @tsv')" \
  "$(printf 'block\t%s\tnone\t%s\tnull' "$LOOP" "$LOOP")" "vdd (loop devices expose no WWID)"
vs_assert_eq "$(disk vdd '.pool')" null "vdd pool"

# vde: network NFS disk, export split by asking the server itself
vs_assert_eq "$(disk vde '[.type,.pool_type,.path] | @tsv')" \
  "$(printf 'network\tnetwork\tnfs://127.0.0.1/export/net.raw')" "vde"
vs_assert_eq "$(disk vde '.nfs | [.server,.export,.path] | @tsv')" \
  "$(printf '127.0.0.1\t/export\t/net.raw')" "vde nfs"

# vdf: network iSCSI disk
vs_assert_eq "$(disk vdf '.iscsi | [.portal,.iqn,(.lun|tostring)] | @tsv')" \
  "$(printf '%s\t%s\t1' "$ISCSI_PORTAL" "$ISCSI_IQN")" "vdf iscsi"
vs_assert_eq "$(disk vdf '.pool_type')" network "vdf pool_type"

# sda: cdrom, skipped
vs_assert_eq "$(disk sda '[.device,.skipped] | @tsv')" "$(printf 'cdrom\tremovable media (cdrom)')" "sda"
vs_assert_eq "$(disk sda '.incremental')" null "sda (skipped): no incremental field"

# snapshot_provider: the one `auto` would use, or null and why (nothing created to find out)
# provider T EXPECTED [NEEDLE...]: EXPECTED "null" wants a reason holding every NEEDLE
provider() {
  local t=$1 want=$2 reason; shift 2
  vs_assert_eq "$(disk "$t" '.snapshot_provider')" "$want" "$t snapshot_provider"
  reason=$(disk "$t" '.snapshot_provider_reason')
  if [ "$want" != null ]; then vs_assert_eq "$reason" null "$t snapshot_provider_reason"; return; fi
  for n in "no provider: " "$@"; do vs_assert_contains "$reason" "$n" "$t snapshot_provider_reason"; done
}
NOHOOK="needs a hook (name one in "
provider vdg reflink
[ ! -e "$XFS/virtsnap-snapshots" ] || vs_fail "discover made $XFS/virtsnap-snapshots: it must only ask"
# vda's file system is the work directory's: told by stat and xfs_info, not by virtsnap
case $(stat -f -c %T "$W/pool") in
  xfs) if xfs_info "$W/pool" | grep -q 'reflink=1'; then provider vda reflink
       else provider vda null "made without reflink" "$NOHOOK"; fi ;;
  btrfs) provider vda "$([ "$(stat -c %i "$W/pool")" = 256 ] && echo btrfs || echo reflink)" ;;
  ext2/ext3) provider vda null "ext2/3/4" "$W/pool" "cannot reflink" "$NOHOOK" ;;
  *) provider vda null "cannot reflink" "$NOHOOK" ;;
esac
[ ! -e "$W/pool/virtsnap-snapshots" ] || vs_fail "discover made $W/pool/virtsnap-snapshots"
provider vdb null "an iSCSI LUN is snapshotted by its array" "$NOHOOK"
provider vdc null "a file on an NFS export is snapshotted by its server" "$NOHOOK"
provider vdd null "a block device" "$NOHOOK"
provider vde null "a file on an NFS export" "$NOHOOK"
provider vdf null "an iSCSI LUN" "$NOHOOK"
provider sda null "not backed up: removable media (cdrom)"
# --snapshot-config: a hook for every disk makes the NFS and iSCSI disks "hook"; provider=none for
# vdg's file disk says so; the same configuration file's name in the advice of the others
printf '[defaults]\nhook=/bin/true\n' > "$W/snap.conf"; chmod 600 "$W/snap.conf"
vs_virtsnap discover --json --snapshot-config "$W/snap.conf" "$MIX" > "$W/mix-conf.json"
for t in vdb vdc vdf; do
  vs_assert_eq "$(jq -r --arg t $t '.[0].disks[] | select(.target == $t) | .snapshot_provider' "$W/mix-conf.json")" \
    hook "$t snapshot_provider with a hook configured"
done
printf '[defaults]\nprovider=none\n' > "$W/none.conf"; chmod 600 "$W/none.conf"
vs_virtsnap discover --json --snapshot-config "$W/none.conf" "$MIX" > "$W/mix-none.json"
vs_assert_contains "$(jq -r '.[0].disks[] | select(.target == "vdg") | .snapshot_provider_reason' "$W/mix-none.json")" \
  "says provider=none" "vdg with provider=none"
vs_log "ok: discover --snapshot-config: hooks and provider=none"

# --mapping: one entry per disk that is backed up, cdrom left out
ESC_PORTAL=${ISCSI_PORTAL//:/%3A}
ESC_IQN=${ISCSI_IQN//:/%3A}
expected="$MIX:localhost:$W/pool/top.qcow2;"
expected+="$MIX:$ESC_PORTAL:$ESC_IQN/1;"
expected+="$MIX:127.0.0.1:/export/nfs-disk.qcow2;"
expected+="$MIX:localhost:$LOOP;"
expected+="$MIX:127.0.0.1:/export/net.raw;"
expected+="$MIX:$ESC_PORTAL:$ESC_IQN/1;"
expected+="$MIX:localhost:$XFS/vdg.img;"
vs_assert_eq "$(vs_virtsnap discover --mapping "$MIX")" "$expected" "--mapping"

# Text output names every disk.
text=$(vs_virtsnap discover "$MIX")
for t in vda vdb vdc vdd vde vdf vdg sda; do vs_assert_contains "$text" "  $t " "text output"; done
vs_assert_contains "$text" "storage snapshot: reflink" "text output: vdg's provider"
vs_assert_contains "$text" "storage snapshot: no provider: an iSCSI LUN" "text output: vdf's reason"

# --- errors: unknown domain, a pool that cannot be read, unreachable URI --------------
BAD=$P-badpool
sed -e "s|<name>$MIX</name>|<name>$BAD</name>|" -e "s|$P-iscsi|$P-nosuchpool|" "$W/mix.xml" |
  grep -v '<uuid>' > "$W/bad.xml"
vs_domain_track "$BAD"
virsh define "$W/bad.xml" >/dev/null

set +e
vs_virtsnap discover --json "$MIX" "$P-nosuchdomain" "$BAD" > "$W/err.json" 2> "$W/err.txt"
rc=$?
set -e
vs_assert_eq "$rc" 1 "exit status with an unknown domain and a missing pool"
vs_assert_contains "$(cat "$W/err.txt")" "domain '$P-nosuchdomain' not found" "unknown domain message"
vs_assert_contains "$(cat "$W/err.txt")" "storage pool '$P-nosuchpool' does not exist" "missing pool message"
vs_assert_contains "$(cat "$W/err.txt")" "disk vdb" "missing pool message names the disk"
vs_assert_eq "$(jq -r '[.[].name] | join(",")' "$W/err.json")" "$MIX,$BAD" "other domains still reported"
vs_assert_eq "$(jq -r '.[1].disks[] | select(.target=="vda") | .pool' "$W/err.json")" "$P-dir" \
  "other disks of the broken domain still resolved"
vs_assert_contains "$(jq -r '.[1].disks[] | select(.target=="vdb") | .error' "$W/err.json")" \
  "$P-nosuchpool" "error recorded on the disk"

set +e
vs_virtsnap -c 'qemu:///system?socket=/nonexistent/libvirt-sock' discover > "$W/uri.out" 2> "$W/uri.err"
rc=$?
set -e
vs_assert_eq "$rc" 1 "exit status for an unreachable URI"
vs_assert_contains "$(cat "$W/uri.err")" "cannot open qemu:///system?socket=/nonexistent/libvirt-sock" "URI message"
vs_assert_eq "$(cat "$W/uri.out")" "" "nothing on stdout for an unreachable URI"

# --- a running guest: live XML, agent answering, disk inside the dir pool -------------
GUEST=$P-guest
vs_guest_disk "$W/pool/guest.qcow2"
vs_guest_start "$GUEST" "$W/pool/guest.qcow2"
vs_virtsnap discover --json "$GUEST" > "$W/guest.json"
vs_assert_eq "$(jq -r '.[0] | [.state,.agent,.persistent] | map(tostring) | join(",")' "$W/guest.json")" \
  "running,responding,true" "running guest state/agent"
vs_assert_eq "$(jq -r '.[0].id | type' "$W/guest.json")" number "running guest has an id"
vs_assert_eq "$(jq -r '.[0].disks[0] | [.target,.format,.path,.pool,.pool_type] | @tsv' "$W/guest.json")" \
  "$(printf 'vda\tqcow2\t%s\t%s\tdir' "$W/pool/guest.qcow2" "$P-dir")" "running guest disk"
vs_assert_eq "$(jq -r '.[0].disks[0].backing_chain_complete' "$W/guest.json")" true "live chain complete"

# Discovering everything includes all three, sorted by name; the broken one still makes
# the exit status 1.
set +e
vs_virtsnap discover --json > "$W/all.json" 2> "$W/all.err"
rc=$?
set -e
vs_assert_eq "$rc" 1 "exit status of discovering all with one broken domain"
names=$(jq -r '[.[].name | select(startswith("'"$P"'"))] | join(",")' "$W/all.json")
vs_assert_eq "$names" "$BAD,$GUEST,$MIX" "all domains, sorted"
vs_log "discover: all checks passed"
