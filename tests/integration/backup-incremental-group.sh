#!/bin/bash
# backup-incremental-group.sh -- `backup --mode=begin` of two running guests in one run: one
# freeze of both (their frozen windows overlap), a pull-mode job and a checkpoint per domain,
# one backup holding both. Then each guest writes a different amount and one incremental run
# reads about what each wrote, from each domain's own base; each export is a quiesced copy.
# Then one domain's checkpoint is deleted: in the same run that domain falls back to a full
# backup (and says why) while the other stays incremental. No job or scratch file is left.
set -euo pipefail
. "$VS_SOURCE_ROOT/tests/lib/harness.sh"

vs_test_open --libvirt
P=vst-incg-$$
MiB=$((1024 * 1024))

for i in 1 2; do
  vs_guest_disk "$W/d$i.qcow2" >/dev/null
  vs_guest_start "$P-$i" "$W/d$i.qcow2"
done

group() {   # group OUT.json [ARGS...]: one begin-mode run over both guests
  local out=$1; shift
  vs_virtsnap backup --repo "$REPO" --init --state-dir "$STATE" --mode=begin --json "$@" "$P-1" "$P-2" > "$out"
  jq -c '{id, group_freeze_ms, domains: [.domains[] | {name, ok, level, base, note, read: .disks[0].bytes_read}]}' "$out" >&2
}
dom() { jq -r --arg n "$P-$2" ".domains[] | select(.name == \$n) | .$3" "$1"; }
one_instant() {   # one_instant OUT WHAT: the latest freeze began before the earliest thaw returned
  local latest earliest
  latest=$(jq '[.domains[].frozen_at_ms] | max' "$1")
  earliest=$(jq '[.domains[].thawed_at_ms] | min' "$1")
  [ "$latest" -lt "$earliest" ] ||
    vs_fail "$2: freeze windows do not overlap: last freeze at $latest, first thaw at $earliest"
  [ "$(jq -r .group_freeze_ms "$1")" -ge 0 ] || vs_fail "$2: group_freeze_ms missing"
  vs_log "ok: $2: one frozen instant ($(jq -r .group_freeze_ms "$1") ms)"
}
exports_verify() {   # exports_verify OUT: each domain's export is a quiesced copy
  local id i
  id=$(jq -r .id "$1")
  for i in 1 2; do
    vs_virtsnap export --repo "$REPO" "$id" "$P-$i" vda "$W/e$i.qcow2"
    "$VS_GUEST_SRC/verify-backup.sh" "$W/e$i.qcow2" >/dev/null || vs_fail "export of $P-$i in $id is not consistent"
    rm -f "$W/e$i.qcow2"
  done
  vs_log "ok: both exports of $id verify"
}
no_leftovers() {
  local i
  for i in 1 2; do
    vs_assert_eq "$(virsh domjobinfo "$P-$i" | awk -F': *' '/Job type/ {sub(/ +$/, "", $2); print $2}')" None \
      "$1: $P-$i's backup job ended"
  done
  vs_assert_eq "$(find "$STATE/scratch" -type f 2>/dev/null | wc -l)" 0 "$1: scratch files left"
  vs_assert_eq "$(ls "$STATE/journal" 2>/dev/null | wc -l)" 0 "$1: journals left"
}

# --- one full backup of both --------------------------------------------------------------
group "$W/g1.json"
for i in 1 2; do
  vs_assert_eq "$(dom "$W/g1.json" $i 'ok,.mode,.level,.consistency' | tr '\n' ,)" "true,begin,full,quiesced," "$P-$i full"
done
one_instant "$W/g1.json" "full"
ID1=$(jq -r .id "$W/g1.json")
vs_assert_eq "$(vs_virtsnap list --repo "$REPO" --json | jq -r --arg id "$ID1" \
  '.[] | select(.id == $id) | [.domains[].name] | sort | join(",")')" "$P-1,$P-2" "one backup, both domains"
no_leftovers full
exports_verify "$W/g1.json"

# --- each writes its own amount; one incremental run ----------------------------------------
w1=$((16 * MiB)) w2=$((40 * MiB))
vs_gexec "$P-1" "dd if=/dev/urandom of=/data/g1 bs=1M count=$((w1 / MiB)) conv=fsync 2>/dev/null" >/dev/null
vs_gexec "$P-2" "dd if=/dev/urandom of=/data/g2 bs=1M count=$((w2 / MiB)) conv=fsync 2>/dev/null" >/dev/null
group "$W/g2.json"
one_instant "$W/g2.json" "incremental"
for i in 1 2; do
  vs_assert_eq "$(dom "$W/g2.json" $i 'ok,.level,.base' | tr '\n' ,)" "true,inc,$ID1," "$P-$i incremental"
done
r1=$(dom "$W/g2.json" 1 'disks[0].bytes_read') r2=$(dom "$W/g2.json" 2 'disks[0].bytes_read')
# Each read its own change (whole chunks around it, the writer's log, ext4 metadata).
[ "$r1" -ge "$w1" ] && [ "$r1" -le $((2 * w1 + 16 * MiB)) ] || vs_fail "$P-1 read $r1 bytes for $w1 written"
[ "$r2" -ge "$w2" ] && [ "$r2" -le $((2 * w2 + 16 * MiB)) ] || vs_fail "$P-2 read $r2 bytes for $w2 written"
vs_log "ok: $P-1 read $r1 for $w1 written, $P-2 read $r2 for $w2 written"
no_leftovers incremental
exports_verify "$W/g2.json"

# --- one domain's chain broken: it alone falls back to full --------------------------------
virsh checkpoint-delete "$P-2" "$(dom "$W/g2.json" 2 checkpoint)" >/dev/null
vs_gexec "$P-1" "dd if=/dev/urandom of=/data/g1b bs=1M count=8 conv=fsync 2>/dev/null" >/dev/null
group "$W/g3.json"
ID2=$(jq -r .id "$W/g2.json")
vs_assert_eq "$(dom "$W/g3.json" 1 'ok,.level,.base' | tr '\n' ,)" "true,inc,$ID2," "$P-1 stays incremental"
vs_assert_eq "$(dom "$W/g3.json" 2 'ok,.level' | tr '\n' ,)" "true,full," "$P-2 falls back to full"
vs_assert_contains "$(dom "$W/g3.json" 2 note)" "no longer exists" "$P-2's note"
one_instant "$W/g3.json" "mixed"
no_leftovers mixed
exports_verify "$W/g3.json"
vs_virtsnap verify --repo "$REPO"
vs_log "backup-incremental-group: all checks passed"
