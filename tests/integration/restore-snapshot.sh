#!/bin/bash
# restore-snapshot.sh -- `restore --from-snapshot` and `--define-pools` on a real guest whose
# disk lives in a libvirt dir pool on a loop-mounted XFS made with reflink (issue 15). A
# `backup --storage-snapshot=reflink --no-copy` records the snapshot and the pool's XML; the
# guest then writes a marker. `--as NEW` boots a new domain on a thin clone (the agent
# answers; no marker, the data of the backup point; the original runs on untouched). The
# pool is undefined meanwhile: an in-place restore fails naming the pool and
# --define-pools, the guest still running; with --define-pools the pool is back, the
# domain stopped and its disk rolled back in the same inode, byte for byte the snapshot;
# started, the marker is gone and the data is the backup point's. kill -9 after a clone
# was made and before its domain is defined: the clone is a journaled temp file that
# `recover` removes.
set -euo pipefail
. "$VS_SOURCE_ROOT/tests/lib/harness.sh"

vs_test_open --libvirt rsnap
command -v mkfs.xfs >/dev/null || vs_skip "mkfs.xfs missing (xfsprogs; scripts/deps.sh --test)"
[ -e /dev/loop-control ] || vs_skip "no loop devices"
N=vst-rsnap-$$-copy
N2=vst-rsnap-$$-kill
P=vst-rsnap-$$-pool

M=$W/xfs
truncate -s 3G "$W/xfs.img"
mkfs.xfs -q -m reflink=1 "$W/xfs.img"
mkdir -p "$M"
vs_on_exit umount -l "$M"      # registered before the guest and pool: their cleanup runs first
mount -o loop "$W/xfs.img" "$M"
cat > "$W/pool.xml" <<EOF
<pool type='dir'><name>$P</name><target><path>$M/pool</path></target></pool>
EOF
vs_define_pool "$W/pool.xml" >/dev/null
DISK=$M/pool/disk.qcow2
vs_guest_disk "$DISK" >/dev/null
vs_guest_start "$D" "$DISK"
disk_now() { virsh domblklist "$1" --details | awk '$3 == "vda" {print $4}'; }
temps() { ls -A "$M/pool" | grep -c '^\.virtsnap-tmp-' || true; }

# --- the backup point: data, then a --no-copy backup ---------------------------------------
vs_gexec "$D" 'dd if=/dev/urandom of=/data/bulk bs=1M count=8 conv=fsync 2>/dev/null' >/dev/null
sum0=$(vs_gexec "$D" 'md5sum < /data/bulk')
vs_virtsnap backup --repo "$REPO" --init --state-dir "$STATE" --storage-snapshot=reflink --no-copy --json "$D" \
  > "$W/b.json"
ID=$(jq -r .id "$W/b.json")
[ "$ID" != null ] || { cat "$W/b.json" >&2; vs_fail "backup failed"; }
# reflink's snapshot directory defaults to the disk's own (the pool's)
vs_assert_eq "$(jq -r '.domains[0].disks[0].snapshot | [.provider, .snapshot_dir, .pool] | join(",")' "$REPO/backups/$ID.json")" \
  "reflink,$M/pool,$P" "the snapshot recorded"
SNAP=$M/pool/virtsnap-snapshots/virtsnap-$ID-vda
[ -f "$SNAP" ] || vs_fail "the --no-copy snapshot $SNAP is missing"
vs_assert_eq "$(jq -r '.domains[0].pools | map(.name) | join(",")' "$REPO/backups/$ID.json")" "$P" \
  "the backup saved the pool the disk lives in"
vs_assert_contains "$(jq -r '.domains[0].pools[0].xml' "$REPO/backups/$ID.json")" "<path>$M/pool</path>" \
  "the saved pool XML"
vs_gexec "$D" "echo MARKER-$$ > /data/marker && sync" >/dev/null
vs_assert_eq "$(vs_gexec "$D" 'cat /data/marker')" "MARKER-$$" "the marker written after the backup"

# --- --as NEW: a thin clone that boots ---------------------------------------------------------
vs_domain_track "$N"
t0=$(date +%s%N)
vs_virtsnap restore --repo "$REPO" --state-dir "$STATE" --from-snapshot --as "$N" --json "$D" > "$W/r1.json"
vs_log "restore --from-snapshot --as took $(( ($(date +%s%N) - t0) / 1000000 )) ms"
cat "$W/r1.json" >&2
vs_assert_eq "$(jq -r '.domains[0] | [.restored_as, .ok, .in_place, .defined, .started] | map(tostring) | join(",")' "$W/r1.json")" \
  "$N,true,false,true,true" "restore --from-snapshot --as result"
vs_assert_eq "$(jq -r '.domains[0].disks[0] | [.path, .action, .snapshot] | join(",")' "$W/r1.json")" \
  "$M/pool/$N-vda.qcow2,cloned,reflink:virtsnap-$ID-vda" "the clone beside the original"
vs_assert_eq "$(disk_now "$N")" "$M/pool/$N-vda.qcow2" "the new domain's disk is the clone"
[ "$(virsh domuuid "$N" | sed -n 1p)" != "$(virsh domuuid "$D" | sed -n 1p)" ] || vs_fail "the clone's domain has the original's UUID"
vs_wait_agent "$N" 120
vs_assert_eq "$(vs_gexec "$N" 'cat /data/marker 2>/dev/null || echo none')" none "no marker in the clone"
vs_assert_eq "$(vs_gexec "$N" 'md5sum < /data/bulk')" "$sum0" "the clone's data is the backup point's"
vs_assert_eq "$(disk_now "$D"),$(vs_gexec "$D" 'cat /data/marker')" "$DISK,MARKER-$$" "the original runs on, untouched"
vs_assert_eq "$(temps)" 0 "no temp file beside the disks"
vs_assert_eq "$(virsh vol-list "$P" | awk -v v="$N-vda.qcow2" '$1 == v {print $2}')" "$M/pool/$N-vda.qcow2" \
  "the clone is a volume of the pool"
virsh destroy "$N" >/dev/null

# --- the pool undefined meanwhile ------------------------------------------------------------
virsh pool-destroy "$P" >/dev/null
virsh pool-undefine "$P" >/dev/null
rc=0
vs_virtsnap restore --repo "$REPO" --state-dir "$STATE" --from-snapshot --force "$D" > "$W/r2.out" 2>&1 || rc=$?
cat "$W/r2.out" >&2
[ "$rc" -ne 0 ] || vs_fail "a restore into an undefined pool exited 0"
vs_assert_contains "$(cat "$W/r2.out")" "storage pool '$P'" "the error names the pool"
vs_assert_contains "$(cat "$W/r2.out")" "--define-pools" "the error says how to get it back"
vs_assert_eq "$(virsh domstate "$D" | head -1),$(vs_gexec "$D" 'cat /data/marker')" "running,MARKER-$$" \
  "the guest untouched by the refused restore"

# --- in place by rollback, the pool defined again ---------------------------------------------
ino0=$(stat -c %i "$DISK")
vs_virtsnap restore --repo "$REPO" --state-dir "$STATE" --from-snapshot --force --define-pools --json "$D" \
  > "$W/r3.json"
cat "$W/r3.json" >&2
vs_assert_eq "$(jq -r '.domains[0] | [.ok, .in_place, .stopped] | map(tostring) | join(",")' "$W/r3.json")" \
  "true,true,true" "restore --from-snapshot in place"
vs_assert_eq "$(jq -r '.domains[0].disks[0] | [.path, .action] | join(",")' "$W/r3.json")" "$DISK,rolled-back" \
  "the disk rolled back"
vs_assert_contains "$(jq -r '.pools | join(";")' "$W/r3.json")" "storage pool '$P' defined from backup $ID" \
  "the result says the pool was defined"
vs_assert_eq "$(virsh pool-info "$P" | awk '$1 == "State:" {print $2}')" running "the pool is back and active"
vs_assert_eq "$(virsh domstate "$D" | head -1)" "shut off" "the domain was stopped for the rollback"
cmp "$DISK" "$SNAP" || vs_fail "the rolled-back disk differs from the snapshot"
vs_assert_eq "$(stat -c %i "$DISK")" "$ino0" "rolled back in the same inode"
virsh start "$D" >/dev/null
vs_wait_agent "$D" 120
vs_assert_eq "$(vs_gexec "$D" 'cat /data/marker 2>/dev/null || echo none')" none "the marker is gone"
vs_assert_eq "$(vs_gexec "$D" 'md5sum < /data/bulk')" "$sum0" "the data is the backup point's"

# --- kill -9 after the clone was made, before its domain: recover removes it -----------------
vs_domain_track "$N2"
rc=0
VIRTSNAP_FAULT=restore-written vs_virtsnap restore --repo "$REPO" --state-dir "$STATE" --from-snapshot \
  --as "$N2" "$D" > "$W/k.out" 2>&1 || rc=$?
vs_assert_eq "$rc" 137 "the restore was killed"
vs_assert_eq "$(temps)" 1 "the clone is a temp file beside the disk"
[ ! -e "$M/pool/$N2-vda.qcow2" ] || vs_fail "the clone is under its final name before its domain"
virsh dominfo "$N2" >/dev/null 2>&1 && vs_fail "the killed restore defined $N2"
vs_virtsnap recover --state-dir "$STATE" > "$W/rec.out" 2>&1 || { cat "$W/rec.out" >&2; vs_fail "recover failed"; }
cat "$W/rec.out" >&2
vs_assert_eq "$(temps)" 0 "recover removed the clone"
vs_assert_eq "$(disk_now "$D")" "$DISK" "the guest's disk after recover"
vs_log "restore-snapshot: all checks passed"
