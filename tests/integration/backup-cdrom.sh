#!/bin/bash
# backup-cdrom.sh -- what Snap Creator's KVM plug-in could not do, on one guest: a running
# guest with an ISO in its CD-ROM (sda, sata) and a data disk (vdb) besides its system disk
# (vda) is backed up without detaching the ISO: the cdrom is skipped, and the backup says so
# with the reason; both disks are in it. The domain is then deleted (destroyed, undefined,
# both disk files removed) and `virtsnap restore --define` brings it back: both disks hold
# the data written in the guest before the backup (checksums taken in the guest, checked in
# the restored images), and the definition still has its <disk device='cdrom'> with the
# ISO; the restored guest boots with it and reads the data. With the ISO file gone, a
# restore (--as, beside) still succeeds: the drive is kept empty so that the domain starts
# (it does), and a note names the missing ISO and the command that inserts it again.
set -euo pipefail
. "$VS_SOURCE_ROOT/tests/lib/harness.sh"

vs_test_open --libvirt cd
command -v genisoimage >/dev/null || vs_skip "genisoimage not installed (scripts/deps.sh --test)"

vs_guest_disk "$W/disk.qcow2" >/dev/null
vs_guest_disk "$W/data.raw" 32M >/dev/null
mkdir -p "$W/iso"
echo "install media $$" > "$W/iso/README.TXT"
genisoimage -quiet -V VSTEST -o "$W/media.iso" "$W/iso"
iso_sum=$(md5sum < "$W/media.iso")
vs_guest_start "$D" "$W/disk.qcow2" \
  "<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='$W/data.raw'/><target dev='vdb' bus='virtio'/></disk>
<disk type='file' device='cdrom'><driver name='qemu' type='raw'/><source file='$W/media.iso'/><target dev='sda' bus='sata'/><readonly/></disk>"
vs_assert_eq "$(virsh domblklist "$D" --details | awk '$2 == "cdrom" {print $3 ":" $4}')" "sda:$W/media.iso" \
  "the ISO is in the guest's cdrom"

# --- data written in the guest, its checksums taken there -----------------------------------
gdev=$(vs_gexec "$D" 'ls /dev/vd? | grep -v /dev/vda | head -n 1')
vs_gexec "$D" "mkdir -p /mnt && mount $gdev /mnt && dd if=/dev/urandom of=/mnt/payload bs=1M count=4 2>/dev/null && dd if=/dev/urandom of=/data/payload bs=1M count=2 2>/dev/null && sync" >/dev/null
sum_vdb=$(vs_gexec "$D" 'md5sum < /mnt/payload' | awk '{print $1}')
sum_vda=$(vs_gexec "$D" 'md5sum < /data/payload' | awk '{print $1}')
vs_gexec "$D" 'umount /mnt' >/dev/null

# --- backup of the running guest, the ISO attached ------------------------------------------
vs_virtsnap backup --repo "$REPO" --init --state-dir "$STATE" --json "$D" > "$W/b.json"
cat "$W/b.json" >&2
ID=$(jq -r .id "$W/b.json")
vs_assert_eq "$(jq -r '.domains[0] | [.ok, .consistency] | map(tostring) | join(",")' "$W/b.json")" \
  "true,quiesced" "backup of the guest with an ISO attached"
vs_assert_eq "$(jq -r '[.domains[0].disks[].target] | join(",")' "$W/b.json")" "vda,vdb" \
  "system and data disk backed up, not the cdrom"
vs_assert_contains "$(jq -r '.domains[0].notes | join("\n")' "$W/b.json")" \
  "disk sda skipped: removable media (cdrom)" "the skipped cdrom is reported with its reason"
vs_assert_eq "$(virsh domblklist "$D" --details | awk '$2 == "cdrom" {print $3 ":" $4}')" "sda:$W/media.iso" \
  "the ISO still attached after the backup"

# --- the VM is deleted: definition and disks --------------------------------------------------
virsh destroy "$D" >/dev/null
virsh undefine "$D" >/dev/null
rm -f "$W/disk.qcow2" "$W/data.raw"

vs_virtsnap restore --repo "$REPO" --state-dir "$STATE" --define --json "$D" > "$W/r.json"
cat "$W/r.json" >&2
vs_assert_eq "$(jq -r '.domains[0] | [.ok, .defined] | map(tostring) | join(",")' "$W/r.json")" "true,true" \
  "restore of the deleted VM"
vs_assert_eq "$(jq -r '[.domains[0].disks[] | .target + ":" + .action] | join(",")' "$W/r.json")" \
  "vda:created,vdb:created" "both disks restored"
vs_assert_eq "$(virsh domblklist "$D" --details | awk '$2 == "cdrom" {print $3 ":" $4}')" "sda:$W/media.iso" \
  "the restored definition still has the ISO in its cdrom"
vs_assert_eq "$(md5sum < "$W/media.iso")" "$iso_sum" "the ISO itself untouched"

# The data, checked in the restored images (no mount: debugfs reads the ext4 images).
fsum() { # IMAGE FORMAT FILE: md5 of FILE in the ext4 file system of IMAGE
  qemu-img convert -f "$2" -O raw "$1" "$W/fs.raw" &&
    debugfs -R "dump /$3 $W/dump" "$W/fs.raw" 2>/dev/null && md5sum < "$W/dump" | awk '{print $1}'
  rm -f "$W/fs.raw" "$W/dump"
}
vs_assert_eq "$(fsum "$W/data.raw" raw payload)" "$sum_vdb" "data disk's payload restored"
vs_assert_eq "$(fsum "$W/disk.qcow2" qcow2 payload)" "$sum_vda" "system disk's payload restored"

# The restored VM boots with its ISO and reads the same data.
out=$(virsh start "$D" 2>&1) || vs_fail "start of the restored domain: $out"
vs_wait_agent "$D" 120
vs_assert_eq "$(vs_gexec "$D" 'md5sum < /data/payload' | awk '{print $1}')" "$sum_vda" "payload read in the restored guest"
vs_assert_eq "$(virsh domblklist "$D" --details | awk '$2 == "cdrom" {print $3 ":" $4}')" "sda:$W/media.iso" \
  "the restored guest runs with the ISO"

# --- the ISO gone at restore time: the drive comes back empty, with a note -------------------
rm -f "$W/media.iso"
mkdir -p "$W/beside"
vs_virtsnap restore --repo "$REPO" --state-dir "$STATE" --as "$D-b" --target-dir "$W/beside" --json "$D" > "$W/r2.json"
cat "$W/r2.json" >&2
vs_assert_eq "$(jq -r '.domains[0].ok' "$W/r2.json")" true "restore with the ISO gone"
vs_assert_contains "$(jq -r '.domains[0].notes | join("\n")' "$W/r2.json")" \
  "cdrom sda: $W/media.iso does not exist" "the missing ISO is named"
vs_assert_contains "$(jq -r '.domains[0].notes | join("\n")' "$W/r2.json")" \
  "virsh change-media $D-b sda $W/media.iso --insert" "how to insert it again"
xml=$(jq -r '.domains[0].xml' "$W/r2.json")
[ -f "$xml" ] || vs_fail "no definition written ($xml)"
vs_assert_eq "$(xmllint --xpath "count(//disk[@device='cdrom'][target/@dev='sda'])" "$xml")" 1 "the cdrom drive kept"
vs_assert_eq "$(xmllint --xpath "count(//disk[@device='cdrom']/source)" "$xml")" 0 "the drive is empty"
# ... and the domain starts with it (with the ISO's path kept, libvirt would refuse).
virsh destroy "$D" >/dev/null
vs_domain_track "$D-b"
out=$(virsh define "$xml" 2>&1) || vs_fail "define $xml: $out"
out=$(virsh start "$D-b" 2>&1) || vs_fail "start of the domain restored without its ISO: $out"
vs_assert_eq "$(virsh domstate "$D-b" | sed -n 1p)" running "restored without its ISO, it runs"
vs_log "backup-cdrom: all checks passed"
