#!/bin/bash
# backup-basic.sh -- the core promise on one real guest whose writer keeps writing
# checksummed records: `virtsnap backup` freezes it for milliseconds, never suspends it,
# and leaves it on exactly the disk chain it had; the exported disk is a quiesced copy
# (fsck clean, journal clean, every record valid); the guest's own record log shows no
# stall over one second around the backup; a second backup stores a small fraction of the
# first (dedup); list, verify and export (qcow2 and raw, sparse) work on the result; a
# shut-off domain is copied directly; --compress=off stores the same disk uncompressed and
# it reads back the same.
set -euo pipefail
. "$VS_SOURCE_ROOT/tests/lib/harness.sh"

vs_test_open --libvirt bb

vs_guest_disk "$W/disk.qcow2" >/dev/null
vs_guest_start "$D" "$W/disk.qcow2"
chain_before=$(virsh domblklist "$D" --details | awk '$3 == "vda" {print $4}')
vs_assert_eq "$chain_before" "$W/disk.qcow2" "disk before the backup"

# --- first backup, with the writer running --------------------------------------------
# 32 MiB that does not compress, so that what dedup saves is measurable.
vs_gexec "$D" 'dd if=/dev/urandom of=/data/bulk bs=1M count=32 conv=fsync 2>/dev/null' >/dev/null
up0=$(vs_gexec "$D" 'cut -d" " -f1 /proc/uptime')
vs_virtsnap backup --repo "$REPO" --init --state-dir "$STATE" --json "$D" > "$W/b1.json"
up1=$(vs_gexec "$D" 'cut -d" " -f1 /proc/uptime')
cat "$W/b1.json" >&2
vs_assert_eq "$(jq -r '.domains[0] | [.name, .ok, .consistency] | map(tostring) | join(",")' "$W/b1.json")" \
  "$D,true,quiesced" "first backup result"
freeze_ms=$(jq -r '.domains[0].freeze_ms' "$W/b1.json")
[ "$freeze_ms" -ge 0 ] && [ "$freeze_ms" -lt 5000 ] || vs_fail "freeze_ms $freeze_ms not in [0, 5000)"
vs_assert_eq "$(jq -r '.group_freeze_ms | type' "$W/b1.json")" number "group_freeze_ms reported"
ID1=$(jq -r .id "$W/b1.json")
read1=$(jq -r '.domains[0].disks[0].bytes_read' "$W/b1.json")
stored1=$(jq -r '.domains[0].disks[0].bytes_stored' "$W/b1.json")
[ "$stored1" -gt 0 ] || vs_fail "first backup stored nothing"

# The guest ran on: still running, never paused, back on its own disk, overlay gone.
vs_assert_eq "$(virsh domstate "$D" | head -1)" running "domain state after backup"
vs_assert_eq "$(virsh domblklist "$D" --details | awk '$3 == "vda" {print $4}')" "$W/disk.qcow2" \
  "disk after the backup"
vs_assert_eq "$(ls "$W" | grep -c '\.virtsnap-[0-9]' || true)" 0 "overlay files left beside the disk"
vs_assert_eq "$(ls "$STATE/overlays" 2>/dev/null | wc -l)" 0 "overlay files left in the state dir"
vs_assert_eq "$(ls "$STATE/journal" 2>/dev/null | wc -l)" 0 "journals left"
vs_assert_eq "$(qemu-img info -U --output=json "$W/disk.qcow2" | jq -r '.["backing-filename"] // "none"')" \
  none "the disk has no backing file after the commit"
vs_assert_eq "$(vs_gexec "$D" 'grep -c " /data " /proc/mounts')" 1 \
  "/data still mounted"

# No stall over one second in the guest's own records during the backup window.
gap=$(vs_gexec "$D" "awk -v a=$up0 -v b=$up1 '\$2 >= a && \$2 <= b { if (p && \$2 - p > m) m = \$2 - p; p = \$2 } END { printf \"%.3f\", m }' /data/records.log")
vs_log "longest gap between guest records during the backup: ${gap}s (window $up0-$up1)"
awk -v g="$gap" 'BEGIN { exit !(g < 1.0) }' || vs_fail "guest stalled ${gap}s during the backup"

# --- the backup itself ------------------------------------------------------------------
vs_virtsnap verify --repo "$REPO" "$ID1"
vs_virtsnap export --repo "$REPO" "$ID1" "$D" vda "$W/export1.qcow2"
vs_assert_eq "$(qemu-img info --output=json "$W/export1.qcow2" | jq -r .format)" qcow2 "default export format"
"$VS_GUEST_SRC/verify-backup.sh" "$W/export1.qcow2" || vs_fail "exported backup is not a consistent copy"
vs_virtsnap export --repo "$REPO" "$ID1" "$D" vda "$W/export1.raw" --format raw
qemu-img compare -q "$W/export1.qcow2" "$W/export1.raw" || vs_fail "raw and qcow2 exports differ"
alloc=$(( $(stat -c %b "$W/export1.raw") * 512 ))
size=$(stat -c %s "$W/export1.raw")
[ "$alloc" -lt "$size" ] || vs_fail "raw export is not sparse ($alloc of $size bytes allocated)"
[ "$read1" -lt "$size" ] || vs_fail "backup read $read1 bytes of a $size-byte disk: holes were read"

# --- second backup: dedup ---------------------------------------------------------------
vs_virtsnap backup --repo "$REPO" --state-dir "$STATE" --json "$D" > "$W/b2.json"
stored2=$(jq -r '.domains[0].disks[0].bytes_stored' "$W/b2.json")
vs_log "stored: first $stored1 bytes, second $stored2 bytes"
[ $((stored2 * 10)) -lt "$stored1" ] || vs_fail "second backup stored $stored2 bytes, not a small fraction of $stored1"
ID2=$(jq -r .id "$W/b2.json")
vs_virtsnap list --repo "$REPO" --json > "$W/list.json"
vs_assert_eq "$(jq -r '[.[].id] | join(",")' "$W/list.json")" "$ID1,$ID2" "list"
vs_assert_eq "$(jq -r '.[1].domains[0] | .name + "/" + .consistency' "$W/list.json")" "$D/quiesced" "list domains"
vs_virtsnap verify --repo "$REPO"
vs_virtsnap export --repo "$REPO" latest "$D" vda "$W/export2.qcow2"
"$VS_GUEST_SRC/verify-backup.sh" "$W/export2.qcow2" || vs_fail "second export is not consistent"

# --- a shut-off domain is copied directly ------------------------------------------------
virsh shutdown "$D" --mode agent >/dev/null
vs_wait_shutoff "$D" 60
vs_virtsnap backup --repo "$REPO" --state-dir "$STATE" --json "$D" > "$W/b3.json"
vs_assert_eq "$(jq -r '.domains[0] | [.ok, .consistency, (.freeze_ms|tostring)] | map(tostring) | join(",")' "$W/b3.json")" \
  "true,quiesced,null" "shut-off domain backup"
vs_virtsnap export --repo "$REPO" latest "$D" vda "$W/export3.raw" --format raw
qemu-img compare -q -f qcow2 -F raw "$W/disk.qcow2" "$W/export3.raw" || vs_fail "shut-off backup differs from the disk"
vs_assert_eq "$(virsh domblklist "$D" --details | awk '$3 == "vda" {print $4}')" "$W/disk.qcow2" \
  "shut-off domain's disk untouched"

# --- --compress=off: the same disk stored uncompressed, read back the same ---------------
if out=$(vs_virtsnap backup --repo "$W/repo-off" --init --state-dir "$STATE" --compress=lz4 "$D" 2>&1); then
  vs_fail "--compress=lz4 was accepted"
fi
vs_assert_contains "$out" "--compress=lz4: use zstd or off" "a bad --compress"
vs_virtsnap backup --repo "$W/repo-zstd" --init --state-dir "$STATE" --json "$D" > "$W/bz.json"
vs_virtsnap backup --repo "$W/repo-off" --init --state-dir "$STATE" --compress=off --json "$D" > "$W/bo.json"
sz=$(jq -r '.domains[0].disks[0].bytes_stored' "$W/bz.json")
so=$(jq -r '.domains[0].disks[0].bytes_stored' "$W/bo.json")
rd=$(jq -r '.domains[0].disks[0].bytes_read' "$W/bo.json")
vs_log "stored: $sz bytes compressed, $so uncompressed, of $rd read"
# The disk holds compressible data (ext4's metadata, the writer's records) besides the
# random bulk: stored uncompressed, it takes more room.
[ "$so" -gt "$sz" ] || vs_fail "--compress=off stored $so bytes, no more than zstd's $sz"
vs_virtsnap verify --repo "$W/repo-off"
vs_virtsnap export --repo "$W/repo-off" latest "$D" vda "$W/export-off.raw" --format raw
qemu-img compare -q -f qcow2 -F raw "$W/disk.qcow2" "$W/export-off.raw" ||
  vs_fail "the uncompressed backup differs from the disk"
vs_log "backup-basic: all checks passed"
