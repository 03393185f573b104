#!/usr/bin/env bash
# snapshots-repo: what a repository knows about the storage snapshots its backups record
# (issue 15), on real reflink snapshots of disk files on a loop-mounted XFS (mkfs.xfs -m
# reflink=1) and a hook's, recorded in a real repository's manifests by snaprecord through the
# vs_repo API (no libvirt): `snapshots` lists them with exists yes; one deleted by hand shows
# exists no and makes verify fail for its snapshot-only backup (BAD snapshot), a notice where the
# data is in the repository too; `list` marks the snapshot-only backup; export of a snapshot-only
# disk is refused with what to do and writes nothing, the copied one exports the snapshot's
# bytes; prune deletes the snapshot files of the backups it removes and keeps, exiting 1, a
# backup whose hook cannot delete its snapshot.
. "$VS_SOURCE_ROOT/tests/lib/harness.sh"
vs_require_root
command -v mkfs.xfs >/dev/null || vs_skip "mkfs.xfs missing (xfsprogs; scripts/deps.sh --test)"
[ -e /dev/loop-control ] || vs_skip "no loop devices"
SNAPRECORD=${SNAPRECORD:-$VS_BUILD_ROOT/tests/block/snapshot/snaprecord}
W=$(vs_workdir)
M=$W/xfs
R=$W/repo

truncate -s 512M "$W/xfs.img"
mkfs.xfs -q -m reflink=1 "$W/xfs.img"
mkdir -p "$M"
vs_on_exit umount "$M"        # registered first: runs even if anything below fails
mount -o loop "$W/xfs.img" "$M"
mkdir -p "$M/pool" "$W/hookstate"
for vm in vm1 vm2 vm3; do head -c 8M /dev/urandom > "$M/pool/$vm-vda.img"; done
sync
SNAPS=$M/pool/virtsnap-snapshots

# A hook for an "array": snapshots are files in hookstate/; it cannot delete them.
cat > "$W/hook.sh" <<EOF
#!/bin/sh
case "\$1" in
create) touch "$W/hookstate/\$VIRTSNAP_SNAP_LABEL" && echo "handle=\$VIRTSNAP_SNAP_LABEL" ;;
exists) [ -e "$W/hookstate/\$VIRTSNAP_SNAP_HANDLE" ] && echo exists=yes || echo exists=no ;;
delete) echo "the array refuses to delete \$VIRTSNAP_SNAP_HANDLE" >&2; exit 1 ;;
*) exit 3 ;;
esac
EOF
chmod 700 "$W/hook.sh"
printf '[pool:array]\nhook=%s\nretries=0\n' "$W/hook.sh" > "$W/snap.conf"
chmod 600 "$W/snap.conf"
CONF=(--snapshot-config "$W/snap.conf")
: > "$W/empty.conf"; chmod 600 "$W/empty.conf"

# run RC NEEDLE CMD...: exit status RC and NEEDLE in the output (stdout and stderr)
run() {
  local want=$1 needle=$2 out rc=0; shift 2
  out=$("$@" 2>&1) || rc=$?
  [ "$rc" = "$want" ] || vs_fail "expected exit $want from $*, got $rc: $out"
  [ -z "$needle" ] || vs_assert_contains "$out" "$needle" "$*"
  printf '%s\n' "$out"
}
rec() { "$SNAPRECORD" --repo "$R" "$@" || vs_fail "snaprecord $* failed"; }
exists_of() { jq -r --arg b "$1" '.[] | select(.backup == $b) | .exists' "$W/snaps.json"; }

vs_virtsnap init --repo "$R" >/dev/null
B1=$(rec --domain vm1 --path "$M/pool/vm1-vda.img" --snapshot-dir "$M/pool")           # snapshot only
B2=$(rec --domain vm2 --path "$M/pool/vm2-vda.img" --snapshot-dir "$M/pool" --copy)    # and copied
B3=$(rec --domain vm3 --path "$M/pool/vm3-vda.img" --hook "$W/hook.sh" --pool array)  # a hook's, only
vs_log "backups: $B1 (vm1, snapshot only), $B2 (vm2, copied too), $B3 (vm3, hook)"
[ -f "$SNAPS/virtsnap-$B1-vda" ] || vs_fail "no reflink snapshot file for $B1"
SHA2=$(sha256sum < "$SNAPS/virtsnap-$B2-vda" | cut -d' ' -f1)
# the disks change after their snapshots: what the repository holds is the snapshot's
dd if=/dev/urandom of="$M/pool/vm2-vda.img" bs=1M count=1 conv=notrunc status=none

# --- snapshots: all three, exists yes
vs_virtsnap snapshots --repo "$R" "${CONF[@]}" --json > "$W/snaps.json" || vs_fail "snapshots --json failed"
vs_assert_eq "$(jq length "$W/snaps.json")" 3 "snapshots listed"
for b in "$B1" "$B2" "$B3"; do vs_assert_eq "$(exists_of "$b")" true "exists of $b"; done
vs_assert_eq "$(jq -r --arg b "$B1" '.[] | select(.backup == $b) | "\(.domain) \(.disk) \(.provider) \(.handle) \(.size) \(.in_repo)"' \
  "$W/snaps.json")" "vm1 vda reflink virtsnap-$B1-vda 8388608 false" "vm1's record"
vs_assert_eq "$(jq -r --arg b "$B2" '.[] | select(.backup == $b) | .in_repo' "$W/snaps.json")" true "vm2 in_repo"
vs_assert_eq "$(jq -r --arg b "$B3" '.[] | select(.backup == $b) | "\(.provider) \(.handle) \(.pool)"' "$W/snaps.json")" \
  "hook virtsnap-$B3-vda array" "vm3's record"
out=$(run 0 "virtsnap-$B1-vda" vs_virtsnap snapshots --repo "$R" "${CONF[@]}" vm1)
vs_assert_eq "$(grep -cE "^[0-9]{8}T" <<<"$out")" 1 "snapshots vm1: one line"
vs_assert_contains "$(grep "$B1" <<<"$out")" " no       yes" "vm1's line: in-repo no, exists yes"
# without the configuration the hook's snapshot cannot be asked: unknown, and why
out=$(run 0 "unknown: snapshot: vm3/vda: made by a hook" vs_virtsnap snapshots --repo "$R" --snapshot-config "$W/empty.conf" vm3)
vs_log "ok: snapshots lists the three with exists yes; a hook not configured is unknown with the reason"
run 2 "" vs_virtsnap snapshots --repo "$R" --bogus >/dev/null
run 1 "snapshots: " vs_virtsnap snapshots --repo "$W/no-such-repo" >/dev/null

# --- list marks the snapshot-only backups; verify passes
vs_assert_eq "$(vs_virtsnap list --repo "$R" --json | jq -r --arg b "$B1" '.[] | select(.id == $b) | "\(.snapshot_only) \(.domains[0].snapshot_only[0])"')" \
  "true vda" "list --json of $B1"
vs_assert_eq "$(vs_virtsnap list --repo "$R" --json | jq -r --arg b "$B2" '.[] | select(.id == $b) | .snapshot_only')" \
  false "list --json of $B2"
vs_assert_contains "$(vs_virtsnap list --repo "$R" | grep "$B1")" "(snapshot-only: vm1/vda)" "list's line of $B1"
run 0 "verify: OK" vs_virtsnap verify --repo "$R" "${CONF[@]}" >/dev/null

# --- export: the snapshot-only disk refused before anything is written, the copied one exports
out=$(run 1 "restore it with \`virtsnap restore --from-snapshot\`, or copy it into the repository with \`virtsnap vault --repo $R $B1\`" \
  vs_virtsnap export --repo "$R" "$B1" vm1 vda "$W/vm1.raw")
vs_assert_contains "$out" "backup $B1, domain vm1, disk vda" "export's refusal names the disk"
[ ! -e "$W/vm1.raw" ] || vs_fail "the refused export wrote $W/vm1.raw"
[ -z "$(ls -A "$W" | grep virtsnap-tmp)" ] || vs_fail "the refused export left a temp file"
vs_virtsnap export --repo "$R" "$B2" vm2 vda "$W/vm2.raw" >/dev/null || vs_fail "export of the copied disk failed"
vs_assert_eq "$(sha256sum < "$W/vm2.raw" | cut -d' ' -f1)" "$SHA2" "exported vm2 = its snapshot's bytes"
vs_log "ok: export refuses the snapshot-only disk with what to do, exports the copied one"

# --- a snapshot deleted by hand: exists no; verify fails for the snapshot-only backup
rm "$SNAPS/virtsnap-$B1-vda"
vs_virtsnap snapshots --repo "$R" "${CONF[@]}" --json > "$W/snaps.json"
vs_assert_eq "$(exists_of "$B1")" false "exists of $B1 after rm"
vs_assert_eq "$(exists_of "$B2")" true "exists of $B2"
out=$(run 1 "BAD snapshot: backup $B1, domain vm1, disk vda: its reflink snapshot virtsnap-$B1-vda no longer exists" \
  vs_virtsnap verify --repo "$R" "${CONF[@]}")
vs_assert_contains "$out" "1 problem(s)" "verify's count"
rm "$SNAPS/virtsnap-$B2-vda"
out=$(run 0 "notice: backup $B2, domain vm2, disk vda: its reflink snapshot virtsnap-$B2-vda no longer exists" \
  vs_virtsnap verify --repo "$R" "${CONF[@]}" "$B2")
vs_log "ok: a snapshot gone under a snapshot-only disk fails verify; under a copied one it is a notice"

# --- prune: vm1 keeps its newest; the older ones' snapshots go first (one already gone);
#     vm3's older backup stays because its hook cannot delete its snapshot
B4=$(rec --domain vm1 --path "$M/pool/vm1-vda.img" --snapshot-dir "$M/pool")
B5=$(rec --domain vm1 --path "$M/pool/vm1-vda.img" --snapshot-dir "$M/pool")
B6=$(rec --domain vm3 --path "$M/pool/vm3-vda.img" --hook "$W/hook.sh" --pool array)
out=$(run 0 "would delete storage snapshot reflink virtsnap-$B4-vda" \
  vs_virtsnap prune --repo "$R" "${CONF[@]}" --keep-last 1 --dry-run)
[ -f "$SNAPS/virtsnap-$B4-vda" ] || vs_fail "prune --dry-run deleted a snapshot"
out=$(run 1 "prune: backup $B3, domain vm3, disk vda: its hook snapshot virtsnap-$B3-vda cannot be deleted, so the backup is kept" \
  vs_virtsnap prune --repo "$R" "${CONF[@]}" --keep-last 1)
vs_assert_contains "$out" "the array refuses to delete" "prune names the hook's error"
vs_assert_contains "$out" "deleted storage snapshot reflink virtsnap-$B4-vda" "prune says what it deleted"
[ ! -e "$SNAPS/virtsnap-$B4-vda" ] || vs_fail "prune left the snapshot of $B4, which it removed"
[ -f "$SNAPS/virtsnap-$B5-vda" ] || vs_fail "prune deleted the snapshot of $B5, which it keeps"
[ -f "$W/hookstate/virtsnap-$B3-vda" ] || vs_fail "the hook's snapshot of $B3 is gone"
ids=$(ls "$R/backups" | sed -n 's/\.json$//p' | sort | tr '\n' ' ')
vs_assert_eq "$ids" "$(printf '%s\n' "$B2" "$B3" "$B5" "$B6" | sort | tr '\n' ' ')" "backups after prune"
vs_virtsnap snapshots --repo "$R" "${CONF[@]}" --json > "$W/snaps.json"
vs_assert_eq "$(jq -r '[.[].backup] | sort | join(" ")' "$W/snaps.json")" \
  "$(printf '%s\n' "$B2" "$B3" "$B5" "$B6" | sort | tr '\n' ' ' | sed 's/ $//')" "snapshots after prune"
vs_log "ok: prune deleted the removed backups' snapshots and kept the one its hook could not delete"
