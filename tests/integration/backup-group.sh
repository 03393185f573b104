#!/bin/bash
# backup-group.sh -- three running guests backed up in one run: one point in time (every
# guest frozen at one common instant, every snapshot taken inside it), group_freeze_ms
# reported, one backup holding all three, each export a consistent copy. Then a group in
# which one domain cannot be frozen under --quiesce=require: it fails alone, the others
# are backed up and left exactly as they were. Last, the three in one --mode=begin run
# (libvirt backup jobs, one common freeze), then a group incremental.
set -euo pipefail
. "$VS_SOURCE_ROOT/tests/lib/harness.sh"

vs_test_open --libvirt
P=vst-grp-$$

for i in 1 2 3; do
  vs_guest_disk "$W/d$i.qcow2" >/dev/null
  vs_guest_start "$P-$i" "$W/d$i.qcow2"
done

vs_virtsnap backup --repo "$REPO" --init --state-dir "$STATE" --json "$P-1" "$P-2" "$P-3" > "$W/g.json"
cat "$W/g.json" >&2
vs_assert_eq "$(jq -r '[.domains[] | select(.ok and .consistency == "quiesced")] | length' "$W/g.json")" 3 \
  "three quiesced domains"
gms=$(jq -r .group_freeze_ms "$W/g.json")
[ "$gms" -ge 0 ] || vs_fail "group_freeze_ms missing"
vs_log "group frozen for $gms ms"
# One point in time: the latest freeze began before the earliest thaw returned.
latest_freeze=$(jq '[.domains[].frozen_at_ms] | max' "$W/g.json")
earliest_thaw=$(jq '[.domains[].thawed_at_ms] | min' "$W/g.json")
[ "$latest_freeze" -lt "$earliest_thaw" ] ||
  vs_fail "freeze windows do not overlap: last freeze at $latest_freeze, first thaw at $earliest_thaw"
ID=$(jq -r .id "$W/g.json")
vs_assert_eq "$(vs_virtsnap list --repo "$REPO" --json | jq -r --arg id "$ID" \
  '.[] | select(.id == $id) | [.domains[].name] | sort | join(",")')" "$P-1,$P-2,$P-3" "one backup, three domains"
for i in 1 2 3; do
  vs_virtsnap export --repo "$REPO" "$ID" "$P-$i" vda "$W/e$i.qcow2"
  "$VS_GUEST_SRC/verify-backup.sh" "$W/e$i.qcow2" || vs_fail "export of $P-$i is not consistent"
  vs_assert_eq "$(virsh domblklist "$P-$i" --details | awk '$3 == "vda" {print $4}')" "$W/d$i.qcow2" "$P-$i disk"
done

# Two backups into one repository at the same time stay correct.
"$VIRTSNAP" backup --repo "$REPO" --state-dir "$STATE" --json "$P-1" > "$W/c1.json" 2> "$W/c1.err" &
p1=$!
"$VIRTSNAP" backup --repo "$REPO" --state-dir "$STATE" --json "$P-2" "$P-3" > "$W/c2.json" 2> "$W/c2.err" &
p2=$!
wait "$p1" || vs_fail "concurrent backup 1 failed: $(cat "$W/c1.err")"
wait "$p2" || vs_fail "concurrent backup 2 failed: $(cat "$W/c2.err")"
[ "$(jq -r .id "$W/c1.json")" != "$(jq -r .id "$W/c2.json")" ] || vs_fail "concurrent backups share an id"
vs_virtsnap verify --repo "$REPO"
for i in 1 2; do
  id=$(jq -r .id "$W/c$i.json")
  vs_virtsnap export --repo "$REPO" "$id" "$P-$i" vda "$W/c$i.qcow2"
  "$VS_GUEST_SRC/verify-backup.sh" "$W/c$i.qcow2" || vs_fail "export of concurrent backup $i is not consistent"
done

# A domain without an agent channel in a --quiesce=require group: it alone fails.
N=$P-noagent
vs_guest_disk "$W/n.qcow2" >/dev/null
vs_domain_track "$N"
vs_guest_xml "$N" "$W/n.qcow2" | sed '/<channel type=.unix.>/,/<\/channel>/d' > "$W/n.xml"
grep -q guest_agent "$W/n.xml" && vs_fail "channel not removed from the test XML"
virsh define "$W/n.xml" >/dev/null
virsh start "$N" >/dev/null
vs_wait_ready "$N" "$(vs_console_log "$N")" 120 || vs_fail "$N did not boot"

set +e
vs_virtsnap backup --repo "$REPO" --state-dir "$STATE" --quiesce=require --json "$P-1" "$N" > "$W/r.json" 2> "$W/r.err"
rc=$?
set -e
cat "$W/r.err" >&2
vs_assert_eq "$rc" 1 "exit status when one domain of the group fails"
vs_assert_contains "$(cat "$W/r.err")" "domain '$N' has no qemu-guest-agent channel" "error names the domain"
vs_assert_eq "$(jq -r --arg n "$N" '.domains[] | select(.name == $n) | .ok' "$W/r.json")" false "$N failed"
vs_assert_eq "$(jq -r --arg n "$P-1" '.domains[] | select(.name == $n) | [.ok, .consistency] | map(tostring) | join(",")' "$W/r.json")" \
  "true,quiesced" "$P-1 still backed up"
ID2=$(jq -r .id "$W/r.json")
vs_assert_eq "$(vs_virtsnap list --repo "$REPO" --json | jq -r --arg id "$ID2" '.[] | select(.id == $id) | [.domains[].name] | join(",")')" \
  "$P-1" "the backup holds only the domain that succeeded"
vs_assert_eq "$(virsh domstate "$N" | head -1)" running "$N still running"
vs_assert_eq "$(virsh domblklist "$N" --details | awk '$3 == "vda" {print $4}')" "$W/n.qcow2" "$N untouched"

# --quiesce=try backs it up crash-consistent and says so.
vs_virtsnap backup --repo "$REPO" --state-dir "$STATE" --json "$N" > "$W/t.json"
vs_assert_eq "$(jq -r '.domains[0] | [.ok, .consistency] | map(tostring) | join(",")' "$W/t.json")" "true,crash" \
  "--quiesce=try without an agent"
vs_assert_contains "$(jq -r '.domains[0].note' "$W/t.json")" "crash-consistent" "the note says so"
vs_assert_eq "$(jq -c '.domains[0].notes' "$W/t.json")" \
  '["no qemu-guest-agent channel: backed up crash-consistent"]' "notes: a list of one"
vs_virtsnap export --repo "$REPO" latest "$N" vda "$W/n-export.qcow2"
"$VS_GUEST_SRC/verify-backup.sh" "$W/n-export.qcow2" --crash-consistent || vs_fail "crash-consistent export unusable"
vs_assert_eq "$(ls "$W" | grep -c '\.virtsnap-[0-9]' || true)" 0 "overlay files left"

# --- the three in one --mode=begin run: one freeze of all, a backup job and a checkpoint
# each; then a group incremental: each reads only what it wrote, each export verifies.
vs_virtsnap backup --repo "$REPO" --state-dir "$STATE" --mode=begin --json "$P-1" "$P-2" "$P-3" > "$W/b.json"
cat "$W/b.json" >&2
vs_assert_eq "$(jq -r '[.domains[] | select(.ok and .mode == "begin" and .consistency == "quiesced" and .checkpoint != null)] | length' "$W/b.json")" 3 \
  "three domains in one begin-mode run"
latest_freeze=$(jq '[.domains[].frozen_at_ms] | max' "$W/b.json")
earliest_thaw=$(jq '[.domains[].thawed_at_ms] | min' "$W/b.json")
[ "$latest_freeze" -lt "$earliest_thaw" ] ||
  vs_fail "begin mode: freeze windows do not overlap: last freeze at $latest_freeze, first thaw at $earliest_thaw"
for i in 1 2 3; do
  vs_gexec "$P-$i" "dd if=/dev/urandom of=/data/inc bs=1M count=$((i * 2)) 2>/dev/null && sync" >/dev/null
done
vs_virtsnap backup --repo "$REPO" --state-dir "$STATE" --mode=begin --json "$P-1" "$P-2" "$P-3" > "$W/bi.json"
cat "$W/bi.json" >&2
BID=$(jq -r .id "$W/b.json")
IID=$(jq -r .id "$W/bi.json")
for i in 1 2 3; do
  vs_assert_eq "$(jq -r --arg n "$P-$i" '.domains[] | select(.name == $n) | [.ok, .level, .base] | map(tostring) | join(",")' "$W/bi.json")" \
    "true,inc,$BID" "$P-$i incremental in the group"
  read=$(jq -r --arg n "$P-$i" '.domains[] | select(.name == $n) | .disks[0].bytes_read' "$W/bi.json")
  [ "$read" -ge $((i * 2 * 1024 * 1024)) ] && [ "$read" -lt $((i * 2 * 1024 * 1024 + 48 * 1024 * 1024)) ] ||
    vs_fail "$P-$i: the incremental read $read bytes for $((i * 2)) MiB written"
  vs_virtsnap export --repo "$REPO" "$IID" "$P-$i" vda "$W/bi$i.qcow2"
  "$VS_GUEST_SRC/verify-backup.sh" "$W/bi$i.qcow2" || vs_fail "begin-mode group: export of $P-$i is not consistent"
  vs_assert_eq "$(virsh domjobinfo "$P-$i" | awk '/Job type/ {print $3}')" None "$P-$i: no job left"
done

# --- a freeze held over --max-freeze (a 1.5 s pause after it, --max-freeze 1), here in a
# first begin-mode backup: the note says so and still says why the backup is a full one.
vs_virtsnap init --repo "$W/mf" >/dev/null
VIRTSNAP_FAULT=sleep:after-freeze:1500 vs_virtsnap backup --repo "$W/mf" --state-dir "$STATE" \
  --mode=begin --max-freeze 1 --json "$P-1" > "$W/mf.json"
cat "$W/mf.json" >&2
vs_assert_eq "$(jq -r '.domains[0] | [.ok, .consistency] | map(tostring) | join(",")' "$W/mf.json")" "true,crash" \
  "held over --max-freeze: crash-consistent"
vs_assert_contains "$(jq -r '.domains[0].note' "$W/mf.json")" "over --max-freeze" "the long freeze noted"
vs_assert_contains "$(jq -r '.domains[0].note' "$W/mf.json")" "no earlier backup of this domain in this repository" \
  "the note before it kept"
vs_log "backup-group: all checks passed"
