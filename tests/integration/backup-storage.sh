#!/bin/bash
# backup-storage.sh -- `backup --storage-snapshot` on a real guest whose disk lives on a
# loop-mounted XFS made with reflink (issue 15): the guest's point in time is frozen and
# put on an overlay as always, the stable image reflinked, the overlay committed at once;
# the copy reads the snapshot and is a quiesced copy (fsck clean, every record valid),
# the snapshot deleted after it. --no-copy: the backup is the snapshot, recorded in the
# manifest (in_repo false) and itself a consistent image. --keep-snapshot: both, equal.
# Each time the guest runs on its own disk afterwards, no overlay, no journal. Faults:
# kill -9 right after the storage snapshot (the guest stranded on its overlay), during the
# early commit, and before the manifest of a --no-copy backup: `recover` commits the overlay and deletes the
# snapshots no backup records. A provider that cannot work (rbd for a file), a hook
# that fails: the domain fails naming the cause, the guest back on its disk, nothing left.
set -euo pipefail
. "$VS_SOURCE_ROOT/tests/lib/harness.sh"

vs_test_open --libvirt bs
command -v mkfs.xfs >/dev/null || vs_skip "mkfs.xfs missing (xfsprogs; scripts/deps.sh --test)"
[ -e /dev/loop-control ] || vs_skip "no loop devices"

M=$W/xfs
truncate -s 3G "$W/xfs.img"
mkfs.xfs -q -m reflink=1 "$W/xfs.img"
mkdir -p "$M"
vs_on_exit umount -l "$M"      # registered before the guest: its cleanup runs after the guest's
mount -o loop "$W/xfs.img" "$M"
vs_guest_disk "$M/disk.qcow2" >/dev/null
vs_guest_start "$D" "$M/disk.qcow2"
SNAPS=$M/virtsnap-snapshots

disk_now() { virsh domblklist "$D" --details | awk '$3 == "vda" {print $4}'; }
# back_on_disk WHAT: the guest runs on its own disk, no overlay or journal left
back_on_disk() {
  vs_assert_eq "$(virsh domstate "$D" | head -1)" running "$1: domain state"
  vs_assert_eq "$(disk_now)" "$M/disk.qcow2" "$1: the guest's disk"
  vs_assert_eq "$(ls "$M" | grep -c '\.virtsnap-[0-9]' || true)" 0 "$1: overlay files beside the disk"
  vs_assert_eq "$(ls "$STATE/journal" 2>/dev/null | wc -l)" 0 "$1: journals left"
}
snaps() { ls "$SNAPS" 2>/dev/null | sort | tr '\n' ' '; }

# --- copy from the snapshot --------------------------------------------------------------
vs_gexec "$D" 'dd if=/dev/urandom of=/data/bulk bs=1M count=16 conv=fsync 2>/dev/null' >/dev/null
vs_virtsnap backup --repo "$REPO" --init --state-dir "$STATE" --storage-snapshot=reflink --json "$D" \
  > "$W/s1.json"
cat "$W/s1.json" >&2
vs_assert_eq "$(jq -r '.domains[0] | [.ok, .consistency, .mode] | map(tostring) | join(",")' "$W/s1.json")" \
  "true,quiesced,storage-snapshot" "storage backup result"
vs_assert_eq "$(jq -r '.domains[0].overlay_ms | type' "$W/s1.json")" number "overlay_ms reported"
vs_assert_eq "$(jq -r '.domains[0].disks[0] | [.data_path, .snapshot.provider, .snapshot.kept] | map(tostring) | join(",")' "$W/s1.json")" \
  "snapshot,reflink,false" "vda read from a reflink snapshot, not kept"
ID1=$(jq -r .id "$W/s1.json")
vs_assert_eq "$(jq -r '.domains[0].disks[0].snapshot.handle' "$W/s1.json")" "virtsnap-$ID1-vda" "snapshot handle"
back_on_disk "after the storage backup"
vs_assert_eq "$(snaps)" "" "snapshots left after a copy"
vs_assert_eq "$(stat -c %a "$SNAPS")" 700 "snapshot directory mode"
vs_virtsnap verify --repo "$REPO" "$ID1"
vs_virtsnap export --repo "$REPO" "$ID1" "$D" vda "$W/e1.qcow2"
"$VS_GUEST_SRC/verify-backup.sh" "$W/e1.qcow2" || vs_fail "the copy read from the snapshot is not consistent"

# --- --no-copy: the snapshot is the backup -----------------------------------------------
vs_virtsnap backup --repo "$REPO" --state-dir "$STATE" --storage-snapshot --no-copy --json "$D" > "$W/s2.json"
cat "$W/s2.json" >&2
ID2=$(jq -r .id "$W/s2.json")
vs_assert_eq "$(jq -r '.domains[0].disks[0] | [.snapshot.provider, .snapshot.kept, .bytes_read] | map(tostring) | join(",")' "$W/s2.json")" \
  "reflink,true,0" "--no-copy: kept, nothing read"
back_on_disk "after --no-copy"
vs_assert_eq "$(snaps)" "virtsnap-$ID2-vda " "the --no-copy snapshot"
vs_assert_eq "$(jq -r '.domains[0].disks[0] | [.in_repo, .snapshot.provider, .snapshot.handle, .snapshot.snapshot_dir, .chunks == []] | map(tostring) | join(",")' "$REPO/backups/$ID2.json")" \
  "false,reflink,virtsnap-$ID2-vda,$M,true" "the manifest records the snapshot, no data"
"$VS_GUEST_SRC/verify-backup.sh" "$SNAPS/virtsnap-$ID2-vda" || vs_fail "the --no-copy snapshot is not consistent"

# --- --keep-snapshot: copied, and the snapshot kept --------------------------------------
vs_virtsnap backup --repo "$REPO" --state-dir "$STATE" --storage-snapshot=reflink --keep-snapshot --json "$D" \
  > "$W/s3.json"
ID3=$(jq -r .id "$W/s3.json")
vs_assert_eq "$(jq -r '.domains[0].disks[0].snapshot.kept' "$W/s3.json")" true "--keep-snapshot: kept"
back_on_disk "after --keep-snapshot"
vs_assert_eq "$(snaps)" "virtsnap-$ID2-vda virtsnap-$ID3-vda " "the kept snapshots"
vs_assert_eq "$(jq -r '.domains[0].disks[0] | [.in_repo // true, .snapshot.handle] | map(tostring) | join(",")' "$REPO/backups/$ID3.json")" \
  "true,virtsnap-$ID3-vda" "the manifest records data and snapshot"
vs_virtsnap export --repo "$REPO" "$ID3" "$D" vda "$W/e3.qcow2"
qemu-img compare -q "$W/e3.qcow2" "$SNAPS/virtsnap-$ID3-vda" || vs_fail "the copy and the kept snapshot differ"

# --- kill -9 right after the storage snapshot; recover -----------------------------------
rc=0
VIRTSNAP_FAULT=after-storage-snapshot vs_virtsnap backup --repo "$REPO" --state-dir "$STATE" \
  --storage-snapshot=reflink "$D" > "$W/k1.out" 2>&1 || rc=$?
[ "$rc" -ne 0 ] || vs_fail "the killed backup exited 0"
vs_assert_eq "$(ls "$SNAPS" | grep -c -v -e "$ID2" -e "$ID3" || true)" 1 "the killed run's snapshot exists"
[ "$(disk_now)" != "$M/disk.qcow2" ] || vs_fail "expected the guest on its overlay after the kill"
vs_virtsnap recover --state-dir "$STATE" > "$W/r1.out" 2>&1 || { cat "$W/r1.out" >&2; vs_fail "recover failed"; }
cat "$W/r1.out" >&2
vs_assert_contains "$(cat "$W/r1.out")" "deleted storage snapshot virtsnap-" "recover says what it deleted"
back_on_disk "after recover"
vs_assert_eq "$(snaps)" "virtsnap-$ID2-vda virtsnap-$ID3-vda " "only the backups' snapshots remain"

# kill -9 during the early commit (the snapshot made, the guest half way back)
rc=0
VIRTSNAP_FAULT=commit-started vs_virtsnap backup --repo "$REPO" --state-dir "$STATE" \
  --storage-snapshot=reflink "$D" > "$W/k3.out" 2>&1 || rc=$?
[ "$rc" -ne 0 ] || vs_fail "the backup killed in its commit exited 0"
vs_virtsnap recover --state-dir "$STATE" > "$W/r3.out" 2>&1 || { cat "$W/r3.out" >&2; vs_fail "recover failed"; }
cat "$W/r3.out" >&2
back_on_disk "after recover of a run killed in its commit"
vs_assert_eq "$(snaps)" "virtsnap-$ID2-vda virtsnap-$ID3-vda " "the snapshot of the run killed in its commit deleted"

# kill -9 before a --no-copy backup's manifest: its snapshot is nobody's
rc=0
VIRTSNAP_FAULT=before-manifest vs_virtsnap backup --repo "$REPO" --state-dir "$STATE" \
  --storage-snapshot=reflink --no-copy "$D" > "$W/k2.out" 2>&1 || rc=$?
[ "$rc" -ne 0 ] || vs_fail "the killed --no-copy backup exited 0"
vs_virtsnap recover --state-dir "$STATE" > "$W/r2.out" 2>&1 || { cat "$W/r2.out" >&2; vs_fail "recover failed"; }
back_on_disk "after the second recover"
vs_assert_eq "$(snaps)" "virtsnap-$ID2-vda virtsnap-$ID3-vda " "the unrecorded --no-copy snapshot deleted"
vs_assert_eq "$(vs_virtsnap list --repo "$REPO" --json | jq -r '[.[].id] | join(",")')" "$ID1,$ID2,$ID3" \
  "no backup from the killed runs"

# --- a provider that cannot work, a hook that fails --------------------------------------
rc=0
vs_virtsnap backup --repo "$REPO" --state-dir "$STATE" --storage-snapshot=rbd --json "$D" > "$W/f1.json" 2>"$W/f1.err" || rc=$?
[ "$rc" -ne 0 ] || vs_fail "rbd for a file disk: exit 0"
vs_assert_contains "$(jq -r '.domains[0].error' "$W/f1.json")" "rbd asked for a file disk" "rbd for a file disk"
back_on_disk "after the rbd refusal"

cat > "$W/hook.sh" <<'EOF'
#!/bin/sh
echo "array unreachable: $VIRTSNAP_DISK" >&2
exit 1
EOF
chmod 755 "$W/hook.sh"
printf '[defaults]\nhook=%s\nretries=1\nretry-delay=0\n' "$W/hook.sh" > "$W/snap.conf"
chmod 600 "$W/snap.conf"
rc=0
vs_virtsnap backup --repo "$REPO" --state-dir "$STATE" --storage-snapshot=hook --snapshot-config "$W/snap.conf" \
  --json "$D" > "$W/f2.json" 2>"$W/f2.err" || rc=$?
[ "$rc" -ne 0 ] || vs_fail "a failing hook: exit 0"
err=$(jq -r '.domains[0].error' "$W/f2.json")
vs_assert_contains "$err" "array unreachable: $D/vda" "the hook's stderr in the error"
back_on_disk "after the failing hook"
vs_assert_eq "$(snaps)" "virtsnap-$ID2-vda virtsnap-$ID3-vda " "nothing made by the failed runs"
chmod 666 "$W/snap.conf"
rc=0
vs_virtsnap backup --repo "$REPO" --state-dir "$STATE" --storage-snapshot --snapshot-config "$W/snap.conf" \
  "$D" > "$W/f3.out" 2>&1 || rc=$?
[ "$rc" -ne 0 ] || vs_fail "a world-writable snapshot config: exit 0"
vs_assert_contains "$(cat "$W/f3.out")" "chmod go-w" "the world-writable configuration refused"
back_on_disk "after the refused configuration"
vs_log "backup-storage: all checks passed"
