#!/bin/bash
# snapshots-backup.sh -- end to end, what the repository knows about the storage snapshots
# real `backup --storage-snapshot` runs recorded (issue 15): a guest on a loop-mounted XFS with
# reflink, backed up --no-copy (the snapshot is the backup) and --keep-snapshot (both).
# `snapshots` lists them (exists yes, in_repo as made); `list` marks the --no-copy backup
# snapshot-only; export, mount and restore from the repository refuse its disk before writing
# anything, naming backup, domain and disk and what to do; its snapshot deleted by hand makes
# verify fail (BAD snapshot); prune deletes the snapshot of a backup it removes and keeps the
# newest's.
set -euo pipefail
. "$VS_SOURCE_ROOT/tests/lib/harness.sh"

vs_test_open --libvirt sr
M=$W/xfs
vs_xfs_reflink "$M" 2G        # before the guest: unmounted after the guest's cleanup
vs_guest_disk "$M/disk.qcow2" >/dev/null
vs_guest_start "$D" "$M/disk.qcow2"
SNAPS=$M/virtsnap-snapshots
# An empty configuration: what this machine's /etc/virtsnap may hold does not matter.
: > "$W/snap.conf"; chmod 600 "$W/snap.conf"
CONF=(--snapshot-config "$W/snap.conf")

# fails NEEDLE CMD...: exit 1 and NEEDLE in what it printed
fails() {
  local needle=$1 out rc=0; shift
  out=$("$@" 2>&1) || rc=$?
  [ "$rc" = 1 ] || vs_fail "expected exit 1 from $*, got $rc: $out"
  vs_assert_contains "$out" "$needle" "$*"
}

backup() { vs_virtsnap backup --repo "$REPO" --init --state-dir "$STATE" --storage-snapshot "$@" --json "$D" | jq -r .id; }
ID1=$(backup --no-copy)
ID2=$(backup --keep-snapshot)
ID3=$(backup --no-copy)
vs_log "backups: $ID1 (--no-copy), $ID2 (--keep-snapshot), $ID3 (--no-copy)"

# --- snapshots
vs_virtsnap snapshots --repo "$REPO" "${CONF[@]}" --json "$D" > "$W/s.json"
cat "$W/s.json" >&2
vs_assert_eq "$(jq -r 'map("\(.backup) \(.disk) \(.provider) \(.in_repo) \(.exists)") | join(";")' "$W/s.json")" \
  "$ID1 vda reflink false true;$ID2 vda reflink true true;$ID3 vda reflink false true" "snapshots of $D"
vs_assert_eq "$(jq -r --arg b "$ID1" '.[] | select(.backup == $b) | .handle' "$W/s.json")" "virtsnap-$ID1-vda" \
  "the handle"
vs_log "ok: snapshots lists the three, all there"

# --- list, export, mount, restore
vs_assert_eq "$(vs_virtsnap list --repo "$REPO" --json | jq -r 'map("\(.id) \(.snapshot_only)") | join(";")')" \
  "$ID1 true;$ID2 false;$ID3 true" "list's snapshot_only"
WHAT="backup $ID1, domain $D, disk vda: its data is not in the repository"
TODO="restore it with \`virtsnap restore --from-snapshot\`, or copy it into the repository with \`virtsnap vault --repo $REPO $ID1\`"
fails "$TODO" vs_virtsnap export --repo "$REPO" "$ID1" "$D" vda "$W/e1.qcow2"
fails "export: $WHAT" vs_virtsnap export --repo "$REPO" "$ID1" "$D" vda "$W/e1.qcow2"
[ ! -e "$W/e1.qcow2" ] || vs_fail "the refused export wrote its file"
fails "mount: $WHAT" vs_virtsnap mount --repo "$REPO" --socket "$W/m.sock" "$ID1" "$D" vda
[ ! -e "$W/m.sock" ] || vs_fail "the refused mount serves $W/m.sock"
mkdir -p "$W/rt"
# restore refuses it in its plan, before anything is made, in its own words
fails "restore: domain '$D' disk vda of backup $ID1 is not in the repository, only in its storage snapshot virtsnap-$ID1-vda (a backup --no-copy): restore it with --from-snapshot, or copy it into the repository with \`virtsnap vault --repo $REPO $ID1\`; nothing was changed" \
  vs_virtsnap restore --repo "$REPO" --state-dir "$STATE" --backup "$ID1" --as "$D-r" --target-dir "$W/rt" "$D"
vs_assert_eq "$(ls -A "$W/rt" | wc -l)" 0 "files the refused restore left in its target directory"
! virsh dominfo "$D-r" >/dev/null 2>&1 || vs_fail "the refused restore defined $D-r"
vs_virtsnap export --repo "$REPO" "$ID2" "$D" vda "$W/e2.qcow2" >/dev/null
"$VS_GUEST_SRC/verify-backup.sh" "$W/e2.qcow2" || vs_fail "the --keep-snapshot copy is not consistent"
vs_log "ok: export, mount and restore refuse the snapshot-only disk; the copied one exports"

# --- verify: all there, then one deleted by hand
vs_virtsnap verify --repo "$REPO" "${CONF[@]}" >/dev/null || vs_fail "verify failed with every snapshot there"
rm "$SNAPS/virtsnap-$ID1-vda"
fails "BAD snapshot: backup $ID1, domain $D, disk vda: its reflink snapshot virtsnap-$ID1-vda no longer exists" \
  vs_virtsnap verify --repo "$REPO" "${CONF[@]}"
vs_assert_eq "$(vs_virtsnap snapshots --repo "$REPO" "${CONF[@]}" --json | jq -r --arg b "$ID1" '.[] | select(.backup == $b) | .exists')" \
  false "exists after rm"
vs_log "ok: a --no-copy backup's snapshot deleted by hand fails verify"

# --- prune: the newest stays with its snapshot; the others go, their snapshots first
vs_virtsnap prune --repo "$REPO" "${CONF[@]}" --keep-last 1 > "$W/p.out" 2>&1 || { cat "$W/p.out" >&2; vs_fail "prune failed"; }
cat "$W/p.out" >&2
vs_assert_contains "$(cat "$W/p.out")" "deleted storage snapshot reflink virtsnap-$ID2-vda" "prune's report"
vs_assert_eq "$(ls "$SNAPS" | tr '\n' ' ')" "virtsnap-$ID3-vda " "snapshots left after prune"
vs_assert_eq "$(vs_virtsnap list --repo "$REPO" --json | jq -r 'map(.id) | join(" ")')" "$ID3" "backups left"
vs_virtsnap verify --repo "$REPO" "${CONF[@]}" >/dev/null || vs_fail "verify after prune"
vs_log "ok: prune deleted the snapshots of the backups it removed"
