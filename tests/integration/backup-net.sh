#!/bin/bash
# backup-net.sh -- disks that live on storage arrays, read where they live: a running guest
# whose disk is a raw LUN on a real tgtd behind CHAP (a libvirt network iSCSI disk whose <auth>
# names a libvirt secret: virtsnap logs in with it too, and the password appears nowhere), and
# one whose disk is
# a qcow2 file on a real nfs-ganesha export (a network NFS disk). Each is backed up with
# --data-path=direct (libiscsi / libnfs from virtsnap itself; the qcow2 through its qemu-img
# map, so no qemu-nbd reads its data) while its writer runs; the JSON says which path each
# disk used; the export verifies with verify-backup.sh; the guest runs on its original disk,
# thawed, with no overlay left. The NFS disk with --data-path=host goes through QEMU's own
# drivers (qemu-nbd), and so does the CHAP LUN (qemu-nbd gets the secret in a memfd); a wrong
# password fails either path cleanly. The LUN, damaged, is written back over the same path from the repository
# (`virtsnap export ... iscsi://...`): refused untouched when a chunk is corrupt, then byte for
# byte the backup; and `virtsnap restore` of the domain in place does the same, then starts it;
# the qcow2 on NFS is restored in place too (through a temp image), identical to an export. (A target that goes away under a running guest hangs the guest's own
# I/O too; the sources' reconnect and error bounds are tested on their own in
# tests/block/source/net-sources.sh.)
set -euo pipefail
. "$VS_SOURCE_ROOT/tests/lib/harness.sh"

vs_test_open --libvirt
vs_virtsnap init --repo "$REPO" >/dev/null

freeze_status() { virsh qemu-agent-command "$1" '{"execute":"guest-fsfreeze-status"}' --timeout 5 2>/dev/null || echo silent; }
start_on() {   # NAME VDA_XML: the test guest with vda replaced by VDA_XML
  VS_VDA_XML=$2 vs_guest_start "$1" "$W/unused-$1.img"
}
after() {      # NAME SOURCE-ATTR: running, thawed, on its network source, no overlay
  vs_assert_eq "$(virsh domstate "$1" | head -1)" running "$1 running"
  case "$(freeze_status "$1")" in *thawed*) ;; *) vs_fail "$1 not thawed";; esac
  vs_assert_contains "$(virsh dumpxml "$1" | xmllint --xpath "string(//disk[target/@dev='vda']/source/@$2)" -)" "$3" "$1 vda source"
  vs_assert_eq "$(virsh dumpxml "$1" | xmllint --xpath "count(//disk[target/@dev='vda']/backingStore/source)" -)" 0 "$1 has no backing store left"
  vs_assert_eq "$(ls "$STATE/overlays" 2>/dev/null | wc -l)" 0 "no overlay left"
  vs_assert_eq "$(ls "$STATE/journal" 2>/dev/null | wc -l)" 0 "no journal left"
}
backup_verify() {   # NAME PATH EXPECT_DATA_PATH [more backup args]: back up, check, export, verify
  local name=$1 mode=$2 expect=$3 out id; shift 3
  out=$W/$name-$mode.json
  vs_virtsnap backup --repo "$REPO" --state-dir "$STATE" --data-path="$mode" --json "$@" "$name" > "$out"
  cat "$out" >&2
  vs_assert_eq "$(jq -r '.domains[0] | [.ok, .consistency] | map(tostring) | join(",")' "$out")" "true,quiesced" "$name backup ($mode)"
  vs_assert_eq "$(jq -r '.domains[0].disks[0].data_path' "$out")" "$expect" "$name read via"
  id=$(jq -r .id "$out")
  rm -f "$W/export.raw"
  vs_virtsnap export --repo "$REPO" "$id" "$name" vda "$W/export.raw" --format raw >/dev/null
  "$VS_GUEST_SRC/verify-backup.sh" "$W/export.raw" >&2 || vs_fail "$name: the backup ($mode) does not verify"
}

# --- a raw LUN on tgtd ------------------------------------------------------------------------
mkdir -p "$W/iscsi"
"$VS_GUEST_SRC/mkdisk.sh" "$W/iscsi/lun1.img" 128M
ISCSI_SIZE=128M vs_iscsi_start
# CHAP on the target; the password in a libvirt secret that the disk's <auth> names (QEMU and
# virtsnap both log in with it), and never in any output or in the repository.
SECRET=chap-$RANDOM$RANDOM-secret USAGE=vst-chap-$$
TGT_IPC_SOCKET=$VS_ISCSI_DIR/tgtd.sock tgtadm -C 0 --lld iscsi --mode account --op new --user vsuser --password "$SECRET"
TGT_IPC_SOCKET=$VS_ISCSI_DIR/tgtd.sock tgtadm -C 0 --lld iscsi --mode account --op bind --tid 1 --user vsuser
cat > "$W/secret.xml" <<XML
<secret ephemeral='no' private='no'><usage type='iscsi'><target>$USAGE</target></usage></secret>
XML
SECRET_UUID=$(virsh secret-define "$W/secret.xml" | awk '{print $2}')
vs_on_exit virsh secret-undefine "$SECRET_UUID"
virsh secret-set-value "$SECRET_UUID" "$(printf %s "$SECRET" | base64)" >/dev/null
A=vst-bni-$$
host=${ISCSI_PORTAL%:*} port=${ISCSI_PORTAL##*:}
start_on "$A" "<disk type='network' device='disk'><driver name='qemu' type='raw'/>
  <source protocol='iscsi' name='$ISCSI_IQN/1'><host name='$host' port='$port'/>
    <auth username='vsuser'><secret type='iscsi' usage='$USAGE'/></auth></source>
  <target dev='vda' bus='virtio'/></disk>"
backup_verify "$A" direct iscsi
after "$A" name "$ISCSI_IQN/1"
ID_A=$(jq -r .id "$W/$A-direct.json")
cp "$W/export.raw" "$W/a-backup.raw"   # the backup just exported and verified
# The host's view goes through QEMU's own iscsi driver (qemu-nbd), which logs in with the same
# secret (handed over in a sealed memfd, never on its command line).
backup_verify "$A" host qemu-nbd
after "$A" name "$ISCSI_IQN/1"
# A wrong password in the secret: the running guest (logged in long ago) is not disturbed,
# the backup fails on either path, saying why, and the guest is back on its LUN, untouched.
virsh secret-set-value "$SECRET_UUID" "$(printf wrong-password | base64)" >/dev/null
for mode in host direct; do
  set +e
  vs_virtsnap backup --repo "$REPO" --state-dir "$STATE" --data-path=$mode --json "$A" > "$W/$A-bad-$mode.json"
  rc=$?
  set -e
  vs_assert_eq "$rc" 1 "$mode path with a wrong CHAP password"
  vs_assert_contains "$(jq -r '.domains[0].error' "$W/$A-bad-$mode.json")" "uthentication" "says why ($mode)"
  after "$A" name "$ISCSI_IQN/1"
done
virsh secret-set-value "$SECRET_UUID" "$(printf %s "$SECRET" | base64)" >/dev/null
if grep -rqF "$SECRET" "$REPO" "$W"/*.json "$STATE" "$VS_WORKDIR"/*.log 2>/dev/null; then
  vs_fail "the CHAP secret was written somewhere"
fi

virsh destroy "$A" >/dev/null

# Written back over the same path: the LUN, through libiscsi, in place. First a corrupt chunk
# (in a copy of the repository): refused before a byte is written.
LUN_URL="iscsi://$ISCSI_PORTAL/$ISCSI_IQN/1"
dd if=/dev/urandom of="$W/iscsi/lun1.img" bs=1M seek=8 count=16 conv=notrunc status=none   # damage
sum_damaged=$(md5sum < "$W/iscsi/lun1.img")
cp -a "$REPO" "$W/repo-bad"
chunk=$(jq -r '.domains[0].disks[0].chunks[-1][2]' "$REPO/backups/$ID_A.json")
f=$W/repo-bad/chunks/${chunk:0:2}/$chunk
printf '\x5a' | dd of="$f" bs=1 seek=$(( $(stat -c %s "$f") / 2 )) conv=notrunc 2>/dev/null
set +e
printf 'user=vsuser\npassword=%s\n' "$SECRET" > "$W/chap"; chmod 600 "$W/chap"
out=$(vs_virtsnap export --repo "$W/repo-bad" --iscsi-auth "$W/chap" "$ID_A" "$A" vda "$LUN_URL" 2>&1); rc=$?
set -e
vs_assert_eq "$rc" 1 "write back with a corrupt chunk"
vs_assert_contains "$out" "nothing was written" "says nothing was written"
vs_assert_eq "$(md5sum < "$W/iscsi/lun1.img")" "$sum_damaged" "the LUN untouched"
# Then the real one: the LUN holds exactly the backup again.
vs_virtsnap export --repo "$REPO" --iscsi-auth "$W/chap" "$ID_A" "$A" vda "$LUN_URL" >/dev/null
cmp -n "$(stat -c %s "$W/a-backup.raw")" "$W/iscsi/lun1.img" "$W/a-backup.raw" ||
  vs_fail "the LUN does not hold the backup after the write back"
# And the domain restored in place, its LUN rewritten through libiscsi, then started on it.
dd if=/dev/urandom of="$W/iscsi/lun1.img" bs=1M seek=8 count=16 conv=notrunc status=none
vs_virtsnap restore --repo "$REPO" --backup "$ID_A" --state-dir "$STATE" --json --start "$A" > "$W/restore.json"
cat "$W/restore.json" >&2
vs_assert_eq "$(jq -r '.domains[0].disks[0].action' "$W/restore.json")" rewritten "the LUN rewritten in place"
cmp -n "$(stat -c %s "$W/a-backup.raw")" "$W/iscsi/lun1.img" "$W/a-backup.raw" ||
  vs_fail "the LUN does not hold the backup after restore"
vs_wait_agent "$A" 120
vs_assert_eq "$(vs_gexec "$A" 'grep -c " /data " /proc/mounts')" 1 "$A runs on its restored LUN"
virsh destroy "$A" >/dev/null

# --- a qcow2 file on nfs-ganesha ----------------------------------------------------------------
vs_nfs_start
"$VS_GUEST_SRC/mkdisk.sh" "$VS_NFS_DIR/export/guest.qcow2" 128M
chmod 666 "$VS_NFS_DIR/export/guest.qcow2"
B=vst-bnn-$$
start_on "$B" "<disk type='network' device='disk'><driver name='qemu' type='qcow2'/>
  <source protocol='nfs' name='/export/guest.qcow2'><host name='127.0.0.1'/></source>
  <target dev='vda' bus='virtio'/></disk>"
backup_verify "$B" direct nfs
after "$B" name /export/guest.qcow2
backup_verify "$B" host qemu-nbd
after "$B" name /export/guest.qcow2
# A qcow2 cannot be written over in place (it is exported to a file instead): said, nothing done.
set +e
out=$(vs_virtsnap export --repo "$REPO" "$(jq -r .id "$W/$B-host.json")" "$B" vda "$NFS_URL/guest.qcow2" 2>&1); rc=$?
set -e
vs_assert_eq "$rc" 1 "write back of a qcow2 over NFS"
vs_assert_contains "$out" "only a raw disk" "says why"
# But restore in place does: the qcow2 is written whole into the state directory, then over
# the file on the export (through libnfs), byte for byte the image an export makes.
ID_B=$(jq -r .id "$W/$B-direct.json")
virsh destroy "$B" >/dev/null
dd if=/dev/urandom of="$VS_NFS_DIR/export/guest.qcow2" bs=1M seek=8 count=8 conv=notrunc status=none
vs_virtsnap restore --repo "$REPO" --backup "$ID_B" --state-dir "$STATE" --json "$B" > "$W/restore-b.json"
cat "$W/restore-b.json" >&2
vs_assert_eq "$(jq -r '.domains[0].disks[0] | [.action, .format] | join(",")' "$W/restore-b.json")" rewritten,qcow2 \
  "the qcow2 on NFS rewritten in place"
vs_virtsnap export --repo "$REPO" "$ID_B" "$B" vda "$W/b-backup.qcow2" >/dev/null
qemu-img check -q "$VS_NFS_DIR/export/guest.qcow2" || vs_fail "the rewritten qcow2 does not check"
qemu-img compare -q "$W/b-backup.qcow2" "$VS_NFS_DIR/export/guest.qcow2" ||
  vs_fail "the qcow2 on NFS does not hold the backup after restore"
vs_assert_eq "$(ls "$STATE/restore" 2>/dev/null | grep -c virtsnap-restore || true)" 0 "no temp image left"
virsh start "$B" >/dev/null
vs_wait_agent "$B" 120
vs_assert_eq "$(vs_gexec "$B" 'grep -c " /data " /proc/mounts')" 1 "$B runs on its restored qcow2"
virsh destroy "$B" >/dev/null
vs_log "backup-net: all checks passed"
