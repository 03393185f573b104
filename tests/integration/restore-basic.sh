#!/bin/bash
# restore-basic.sh -- a domain that is gone comes back from its backup: a running guest
# (its writer appending checksummed records) is backed up, keeps writing for a few
# seconds, then is destroyed, undefined and its disk deleted. `virtsnap restore --define
# --start` (the newest backup that holds it, in place: the disk goes back where it was,
# from the definition saved in the backup) brings it back: same name and UUID, it boots
# and its agent answers, its record log ends at the backup's point in time (not at the
# original's last record), and, shut down cleanly, its disk passes verify-backup.sh.
# Then in place over an existing shut-off domain: refused while running without --force;
# with --force the guest is stopped, its disk replaced by the backup (byte-identical to an
# export) and the domain started again with --start. A disk with a backing chain comes back
# flattened into its top image, as a standalone image; the backing file is left alone.
set -euo pipefail
. "$VS_SOURCE_ROOT/tests/lib/harness.sh"

vs_test_open --libvirt rb
lastseq() { vs_gexec "$D" 'tail -n 1 /data/records.log' | awk '{print $1}'; }

vs_guest_disk "$W/disk.qcow2" >/dev/null
vs_guest_start "$D" "$W/disk.qcow2"
uuid=$(virsh domuuid "$D" | sed -n 1p)

# the restored boot shows as the uptime dropping: back up a guest up longer than a boot
vs_guest_uptime_at_least "$D" 20
vs_virtsnap backup --repo "$REPO" --init --state-dir "$STATE" --json "$D" > "$W/b1.json"
ID=$(jq -r .id "$W/b1.json")
[ "$ID" != null ] || vs_fail "backup failed: $(cat "$W/b1.json")"
seq_backup=$(lastseq)
vs_log "backup $ID taken; guest's last seq just after it: $seq_backup"
sleep 4
seq_final=$(lastseq)
vs_log "guest's last seq before it is destroyed: $seq_final"
[ "$seq_final" -gt $((seq_backup + 20)) ] || vs_fail "the writer did not keep writing ($seq_backup -> $seq_final)"

# --- the domain is gone: definition, disk and all ------------------------------------------
virsh destroy "$D" >/dev/null
virsh undefine "$D" >/dev/null
rm -f "$W/disk.qcow2"
virsh domstate "$D" >/dev/null 2>&1 && vs_fail "$D still defined"

t0=$(date +%s%N)
vs_virtsnap restore --repo "$REPO" --state-dir "$STATE" --define --start --json "$D" > "$W/r1.json"
vs_log "restore took $(( ($(date +%s%N) - t0) / 1000000 )) ms"
cat "$W/r1.json" >&2
vs_assert_eq "$(jq -r '.domains[0] | [.name, .restored_as, .backup, .ok, .in_place, .defined, .started] | map(tostring) | join(",")' "$W/r1.json")" \
  "$D,$D,$ID,true,true,true,true" "restore result"
vs_assert_eq "$(jq -r '.domains[0].disks[0] | [.target, .path, .format, .action] | join(",")' "$W/r1.json")" \
  "vda,$W/disk.qcow2,qcow2,created" "restored disk"
vs_assert_eq "$(virsh domuuid "$D" | sed -n 1p)" "$uuid" "UUID kept"
vs_assert_eq "$(virsh domblklist "$D" --details | awk '$3 == "vda" {print $4}')" "$W/disk.qcow2" "disk path kept"
vs_assert_eq "$(qemu-img info -U --output=json "$W/disk.qcow2" | jq -r .format)" qcow2 "restored format"
vs_wait_agent "$D" 120
vs_log "restored guest answers"

# The log the restored guest found at boot ends at the backup's point in time: the writer
# continues from the last record, so the boot shows as the first record whose uptime drops.
# (The writer starts a moment after the agent: wait for its first record.)
boundary=
for i in $(seq 60); do
  boundary=$(vs_gexec "$D" "awk '{ if (p != \"\" && \$2 + 0 < p + 0) { print s; exit } p = \$2; s = \$1 }' /data/records.log")
  [ -z "$boundary" ] || break
  sleep 0.5
done
vs_log "restored log: last record before the restored boot has seq $boundary (backup-time seq $seq_backup, final $seq_final)"
[ -n "$boundary" ] || vs_fail "no boot boundary found in the restored records.log"
[ "$boundary" -le $((seq_backup + 5)) ] || vs_fail "restored log goes past the backup ($boundary > $seq_backup + 5)"
[ "$boundary" -lt "$seq_final" ] || vs_fail "restored log is not older than the original ($boundary >= $seq_final)"
[ "$boundary" -gt $((seq_backup - 100)) ] || vs_fail "restored log is far older than the backup ($boundary)"

# Shut down cleanly, then the restored disk must be a consistent file system with valid records.
virsh shutdown "$D" --mode agent >/dev/null
vs_wait_shutoff "$D" 60
"$VS_GUEST_SRC/verify-backup.sh" "$W/disk.qcow2" || vs_fail "restored disk is not consistent"

# --- in place over an existing domain ---------------------------------------------------------
virsh start "$D" >/dev/null
vs_wait_agent "$D" 120
set +e; vs_virtsnap restore --repo "$REPO" --state-dir "$STATE" "$D" > "$W/r2.out" 2> "$W/r2.err"; rc=$?; set -e
cat "$W/r2.err" >&2
vs_assert_eq "$rc" 1 "in place over a running domain without --force"
vs_assert_contains "$(cat "$W/r2.err")" "is running" "running domain refused"
vs_assert_contains "$(cat "$W/r2.err")" "--force" "what to do"
vs_assert_eq "$(virsh domstate "$D" | sed -n 1p)" running "still running after the refusal"

vs_virtsnap restore --repo "$REPO" --state-dir "$STATE" --backup "$ID" --force --start --json "$D" > "$W/r3.json"
cat "$W/r3.json" >&2
vs_assert_eq "$(jq -r '.domains[0] | [.ok, .stopped, .defined, .started] | map(tostring) | join(",")' "$W/r3.json")" \
  "true,true,true,true" "forced in-place restore"
vs_assert_eq "$(jq -r '.domains[0].disks[0].action' "$W/r3.json")" replaced "disk action"
vs_wait_agent "$D" 120
virsh shutdown "$D" --mode agent >/dev/null
vs_wait_shutoff "$D" 60
"$VS_GUEST_SRC/verify-backup.sh" "$W/disk.qcow2" || vs_fail "disk restored over the running domain is not consistent"
vs_assert_eq "$(ls -a "$W" | grep -c 'virtsnap-restore' || true)" 0 "temp files left beside the disk"

# Without --define: the disk is restored, the definition left alone, NAME.xml written.
vs_virtsnap export --repo "$REPO" "$ID" "$D" vda "$W/export.qcow2"
vs_virtsnap restore --repo "$REPO" --state-dir "$STATE" --json "$D" > "$W/r4.json"
vs_assert_eq "$(jq -r '.domains[0] | [.ok, .defined, .xml] | map(tostring) | join(",")' "$W/r4.json")" \
  "true,false,$W/$D.xml" "restore without --define"
vs_assert_contains "$(jq -r '.domains[0].define_command' "$W/r4.json")" "define $W/$D.xml" "virsh command"
vs_assert_contains "$(cat "$W/$D.xml")" "<uuid>$uuid</uuid>" "written XML keeps the UUID"
qemu-img compare -q "$W/export.qcow2" "$W/disk.qcow2" || vs_fail "restored disk differs from the export"
# --- a disk with a backing chain: restored flattened into its top image ------------------------
# (a shut-off domain: backed up directly, restored in place without a boot)
C=vst-rb-$$-chain
qemu-img create -q -f qcow2 -b "$W/export.qcow2" -F qcow2 "$W/chain-top.qcow2"
base_sum=$(md5sum < "$W/export.qcow2")
vs_domain_track "$C"
vs_guest_xml "$C" "$W/chain-top.qcow2" > "$W/chain.xml"
virsh define "$W/chain.xml" >/dev/null
vs_virtsnap backup --repo "$REPO" --state-dir "$STATE" --json "$C" > "$W/bc.json"
CID=$(jq -r .id "$W/bc.json")
[ "$CID" != null ] || vs_fail "backup of the chained domain failed"
vs_assert_eq "$(jq -r --arg d "$C" '.domains[] | select(.name == $d) | .disks[0].chain | length' "$REPO/backups/$CID.json")" 2 "chain in the manifest"
qemu-img create -q -f qcow2 "$W/chain-top.qcow2" 1G      # the disk is lost
vs_virtsnap restore --repo "$REPO" --state-dir "$STATE" --define --json "$C" > "$W/rc.json"
cat "$W/rc.json" >&2
vs_assert_contains "$(jq -r '.domains[0].disks[0].note' "$W/rc.json")" "restored flattened" "chain note"
vs_assert_eq "$(qemu-img info --output=json "$W/chain-top.qcow2" | jq -r '.["backing-filename"] // "none"')" none "standalone top image"
qemu-img compare -q "$W/export.qcow2" "$W/chain-top.qcow2" || vs_fail "flattened disk differs from the backup"
vs_assert_eq "$(md5sum < "$W/export.qcow2")" "$base_sum" "backing file untouched"
vs_assert_eq "$(virsh dumpxml --inactive "$C" | grep -c '<backingStore type=' || true)" 0 "definition has no backing chain"
vs_log "restore-basic: all checks passed"
