#!/bin/bash
# backup-xml.sh -- `virtsnap backup --backup-xml FILE --checkpoint-xml FILE`: the XML a
# `virsh backup-begin` user already has, taken as the job's instructions, on a real guest with
# two qcow2 disks. A pull-mode domainbackup that leaves vdb out (backup='no') and puts vda's
# scratch file where it says, and a domaincheckpoint with a description: the backup holds vda
# only, the checkpoint carries the description, vdb gets no bitmap, the export verifies, and
# the JSON gives back the XML the job was begun with (valid against libvirt's schemas). Then
# <incremental> naming that backup's checkpoint: an incremental on that base that verifies;
# naming it again works (the chain's full keeps its checkpoint), naming the incremental's once
# the chain moved on is refused. Refused before any job starts, each
# with its reason and the guest left without a job or a new checkpoint: a push <target> of the
# user's (push mode itself is backup-push.sh's), a disk the
# domain lacks, a checkpoint <name>, malformed XML, an unknown <incremental>, two
# domains, --mode=overlay. A <server> is replaced by virtsnap's own socket, with a note.
# Last, two field-note failures of pull backups: the guest shuts down while the job runs; the
# domain is defined anew and libvirt forgets its checkpoints (kept in the repository, they are
# redefined, and the next backup is still an incremental).
set -euo pipefail
. "$VS_SOURCE_ROOT/tests/lib/harness.sh"

vs_test_open --libvirt bxml
command -v virt-xml-validate >/dev/null || vs_skip "virt-xml-validate missing (libvirt-clients)"
vs_virtsnap init --repo "$REPO" >/dev/null

vs_guest_disk "$W/disk.qcow2" >/dev/null
qemu-img create -q -f qcow2 "$W/data.qcow2" 32M
vs_guest_start "$D" "$W/disk.qcow2" "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
  <source file='$W/data.qcow2'/><target dev='vdb' bus='virtio'/></disk>"

no_job_left() {   # WHAT: the domain has no backup job and no checkpoint beyond $1 of them
  vs_assert_eq "$(virsh domjobinfo "$D" | awk '/Job type/ {print $3}')" None "no job left ($2)"
  vs_assert_eq "$(virsh checkpoint-list "$D" --name | grep -c . || true)" "$1" "checkpoints ($2)"
  vs_assert_eq "$(virsh domstate "$D" | sed -n 1p)" running "$D running ($2)"
}
refused() {       # NAME EXPECTED_TEXT CHECKPOINTS [backup args...]: exit 1 with the text
  local name=$1 text=$2 ncp=$3 out rc; shift 3
  set +e
  out=$(vs_virtsnap backup --repo "$REPO" --state-dir "$STATE" "$@" 2>&1); rc=$?
  set -e
  echo "$out" >&2
  [ "$rc" -ne 0 ] || vs_fail "$name: accepted"
  vs_assert_contains "$out" "$text" "$name: says why"
  no_job_left "$ncp" "$name"
}

# --- refused before any job starts ---------------------------------------------------------------
echo "<domainbackup><disks><disk name='vda'><target file='$W/mine.qcow2'/></disk></disks></domainbackup>" > "$W/push.xml"
refused "a push target" "a push <target> (virtsnap writes the job's files into --push-dir" 0 --backup-xml "$W/push.xml" "$D"
[ ! -e "$W/mine.qcow2" ] || vs_fail "the refused push job wrote $W/mine.qcow2"
echo "<domainbackup mode='pull'><server name='localhost' port='10809'/><disks><disk name='vdz' backup='yes'/></disks></domainbackup>" > "$W/vdz.xml"
refused "unknown disk" "has no disk vdz" 0 --backup-xml "$W/vdz.xml" "$D"
echo "<domaincheckpoint><name>mine</name></domaincheckpoint>" > "$W/named.xml"
refused "checkpoint name" "virtsnap names the checkpoint itself" 0 --checkpoint-xml "$W/named.xml" "$D"
echo "<domainbackup mode='pull'><disks>" > "$W/broken.xml"
refused "malformed XML" "$W/broken.xml" 0 --backup-xml "$W/broken.xml" "$D"
echo "<domainbackup mode='pull'><incremental>nosuch</incremental><server transport='unix' socket='/tmp/x.sock'/></domainbackup>" > "$W/nosuch.xml"
refused "unknown incremental" "is not the checkpoint of a backup" 0 --backup-xml "$W/nosuch.xml" "$D"
refused "two domains" "name one domain" 0 --backup-xml "$W/vdz.xml" "$D" "$D"
refused "overlay mode" "go with --mode=begin" 0 --mode=overlay --backup-xml "$W/vdz.xml" "$D"

# --- the full: vdb left out, vda's scratch where the XML says, a described checkpoint -------------
mkdir -p "$W/scratch"
cat > "$W/backup.xml" <<EOF
<domainbackup mode='pull'>
  <server transport='unix' socket='/var/run/backup-$D.sock'/>
  <disks>
    <disk name='vda' backup='yes' type='file'><scratch file='$W/scratch/vda.scratch'/></disk>
    <disk name='vdb' backup='no'/>
  </disks>
</domainbackup>
EOF
cat > "$W/checkpoint.xml" <<EOF
<domaincheckpoint><description>nightly chain, site A</description></domaincheckpoint>
EOF
vs_virtsnap backup --repo "$REPO" --state-dir "$STATE" --json --backup-xml "$W/backup.xml" \
  --checkpoint-xml "$W/checkpoint.xml" "$D" > "$W/full.json"
cat "$W/full.json" >&2
vs_assert_eq "$(jq -r '.domains[0] | [.ok, .mode, .level, .consistency] | map(tostring) | join(",")' "$W/full.json")" \
  "true,begin,full,quiesced" "full backup from the user's XML"
vs_assert_contains "$(jq -r '.domains[0].note' "$W/full.json")" "not on the <server> of $W/backup.xml" "the <server> replaced, said"
vs_assert_eq "$(jq -r '[.domains[0].disks[].target] | join(",")' "$W/full.json")" vda "only vda backed up"
ID1=$(jq -r .id "$W/full.json")
CP1=$(jq -r '.domains[0].checkpoint' "$W/full.json")
vs_assert_eq "$(virsh checkpoint-dumpxml "$D" "$CP1" | xmllint --xpath 'string(//description)' -)" \
  "virtsnap full backup: nightly chain, site A" "the checkpoint's description (after virtsnap's own)"
vs_assert_eq "$(virsh checkpoint-dumpxml "$D" "$CP1" | xmllint --xpath 'string(//disks/disk[@name="vdb"]/@checkpoint)' -)" \
  no "vdb has no bitmap"
jq -r '.domains[0].backup_xml' "$W/full.json" > "$W/used-backup.xml"
jq -r '.domains[0].checkpoint_xml' "$W/full.json" > "$W/used-checkpoint.xml"
vs_assert_contains "$(cat "$W/used-backup.xml")" "$W/scratch/vda.scratch" "the scratch file the job used"
virt-xml-validate "$W/used-backup.xml" domainbackup >&2 || vs_fail "the job's domainbackup XML is not valid"
virt-xml-validate "$W/used-checkpoint.xml" domaincheckpoint >&2 || vs_fail "the job's domaincheckpoint XML is not valid"
vs_assert_eq "$(ls "$W/scratch" | wc -l)" 0 "scratch files left"
no_job_left 1 "after the full"
vs_virtsnap export --repo "$REPO" "$ID1" "$D" vda "$W/full.raw" --format raw >/dev/null
"$VS_GUEST_SRC/verify-backup.sh" "$W/full.raw" >&2 || vs_fail "the full backup does not verify"

# --- <incremental> naming that checkpoint ---------------------------------------------------------
vs_gexec "$D" 'dd if=/dev/urandom of=/data/inc bs=1M count=4 2>/dev/null && sync' >/dev/null
sum=$(vs_gexec "$D" 'md5sum /data/inc' | awk '{print $1}')
sed "s|<disks>|<incremental>$CP1</incremental><disks>|" "$W/backup.xml" > "$W/inc.xml"
vs_virtsnap backup --repo "$REPO" --state-dir "$STATE" --json --backup-xml "$W/inc.xml" "$D" > "$W/inc.json"
cat "$W/inc.json" >&2
vs_assert_eq "$(jq -r '.domains[0] | [.ok, .level, .base, .disks[0].read] | map(tostring) | join(",")' "$W/inc.json")" \
  "true,inc,$ID1,changed since $ID1" "incremental on the named checkpoint"
read_bytes=$(jq -r '.domains[0].disks[0].bytes_read' "$W/inc.json")
[ "$read_bytes" -lt $((64 * 1024 * 1024)) ] || vs_fail "the incremental read $read_bytes bytes"
ID2=$(jq -r .id "$W/inc.json")
vs_virtsnap export --repo "$REPO" "$ID2" "$D" vda "$W/inc.raw" --format raw >/dev/null
"$VS_GUEST_SRC/verify-backup.sh" "$W/inc.raw" >&2 || vs_fail "the incremental does not verify"
# the 4 MiB file written before it is in it
vs_assert_eq "$(debugfs -R 'cat /inc' "$W/inc.raw" 2>/dev/null | md5sum | awk '{print $1}')" "$sum" \
  "the data written before the incremental"
# the repository keeps its newest checkpoint and its last full's
no_job_left 2 "after the incremental"
CP2=$(jq -r '.domains[0].checkpoint' "$W/inc.json")
# naming the full's checkpoint again: a differential of the user's making
vs_virtsnap backup --repo "$REPO" --state-dir "$STATE" --json --backup-xml "$W/inc.xml" "$D" > "$W/inc2.json"
vs_assert_eq "$(jq -r '.domains[0] | [.ok, .level, .base] | map(tostring) | join(",")' "$W/inc2.json")" \
  "true,inc,$ID1" "the full's checkpoint named again"
vs_virtsnap export --repo "$REPO" "$(jq -r .id "$W/inc2.json")" "$D" vda "$W/inc2.raw" --format raw >/dev/null
"$VS_GUEST_SRC/verify-backup.sh" "$W/inc2.raw" >&2 || vs_fail "the second backup on the full's checkpoint does not verify"
# the chain moved on: the first incremental's checkpoint is gone, and naming it is refused
sed "s|<disks>|<incremental>$CP2</incremental><disks>|" "$W/backup.xml" > "$W/inc-gone.xml"
refused "incremental on a checkpoint gone" "no longer exists" 2 --backup-xml "$W/inc-gone.xml" "$D"

# --- the guest shut down during a pull backup ------------------------------------------------------
# The job starts, the guest thaws, and while virtsnap waits (a fault point holds it 6 s before
# the copy) the guest shuts itself down: the domain fails with its reason, no backup of it is
# written, nothing is left behind, and the next backup (after a boot) succeeds and verifies.
cps_before=$(virsh checkpoint-list "$D" --name | grep -c . || true)
set +e
VIRTSNAP_FAULT=sleep:after-thaw:6000 "$VIRTSNAP" backup --repo "$REPO" --state-dir "$STATE" --mode=begin \
  --json "$D" > "$W/down.json" 2> "$W/down.err" &
bpid=$!
set -e
for _ in $(seq 100); do
  [ "$(virsh domjobinfo "$D" | awk '/Job type/ {print $3}')" = Unbounded ] && break
  sleep 0.1
done
vs_assert_eq "$(virsh domjobinfo "$D" | awk '/Job type/ {print $3}')" Unbounded "the backup job runs"
virsh shutdown "$D" --mode agent >/dev/null
vs_wait_shutoff "$D" 60
set +e; wait "$bpid"; rc=$?; set -e
cat "$W/down.err" "$W/down.json" >&2
[ "$rc" -ne 0 ] || vs_fail "a backup whose guest shut down under it succeeded"
vs_assert_eq "$(jq -r '.domains[0].ok' "$W/down.json")" false "the domain failed"
vs_assert_contains "$(jq -r '.domains[0].error' "$W/down.json")" "domain '$D' stopped during its backup" "its error says why"
id_down=$(jq -r .id "$W/down.json")
[ "$id_down" = null ] || [ ! -e "$REPO/backups/$id_down.json" ] || vs_fail "a backup was written for the failed run"
vs_assert_eq "$(ls "$STATE/journal" 2>/dev/null | wc -l)" 0 "journals left"
vs_assert_eq "$(find "$STATE/scratch" -type f 2>/dev/null | wc -l)" 0 "scratch files left"
vs_assert_eq "$(virsh checkpoint-list "$D" --name | grep -c . || true)" "$cps_before" "the failed run's checkpoint is gone"
virsh start "$D" >/dev/null
vs_wait_agent "$D" 120
vs_virtsnap backup --repo "$REPO" --state-dir "$STATE" --mode=begin --json "$D" > "$W/after.json"
vs_assert_eq "$(jq -r '.domains[0].ok' "$W/after.json")" true "the next backup"
vs_virtsnap export --repo "$REPO" "$(jq -r .id "$W/after.json")" "$D" vda "$W/after.raw" --format raw >/dev/null
"$VS_GUEST_SRC/verify-backup.sh" "$W/after.raw" >&2 || vs_fail "the backup after the shutdown does not verify"

# --- the domain defined anew (a transient domain started again, a domain moved): libvirt has
# forgotten its checkpoints, its images still hold the bitmaps. The checkpoint is redefined
# from the copy in the repository and the chain goes on with an incremental.
# (What a domain defined anew looks like to libvirt: its checkpoint records gone, the bitmaps
# still in the images. `virsh checkpoint-delete --metadata` makes exactly that state.)
cp_after=$(jq -r '.domains[0].checkpoint' "$W/after.json")
virsh checkpoint-delete "$D" "$cp_after" --metadata >/dev/null
vs_assert_eq "$(virsh checkpoint-list "$D" --name | grep -c . || true)" 0 "libvirt forgot the checkpoints"
vs_gexec "$D" 'dd if=/dev/urandom of=/data/anew bs=1M count=2 2>/dev/null && sync' >/dev/null
vs_virtsnap backup --repo "$REPO" --state-dir "$STATE" --mode=begin --json "$D" > "$W/anew.json"
cat "$W/anew.json" >&2
vs_assert_eq "$(jq -r '.domains[0] | [.ok, .level, .base] | map(tostring) | join(",")' "$W/anew.json")" \
  "true,inc,$(jq -r .id "$W/after.json")" "an incremental after the domain was defined anew"
vs_assert_contains "$(jq -r '.domains[0].note' "$W/anew.json")" "redefined from the copy kept in the repository" "says so"
vs_virtsnap export --repo "$REPO" "$(jq -r .id "$W/anew.json")" "$D" vda "$W/anew.raw" --format raw >/dev/null
"$VS_GUEST_SRC/verify-backup.sh" "$W/anew.raw" >&2 || vs_fail "the incremental after the redefinition does not verify"
vs_virtsnap verify --repo "$REPO" >/dev/null
vs_log "backup-xml: all checks passed"
