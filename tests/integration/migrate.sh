#!/bin/bash
# migrate.sh -- `virtsnap migrate` between two libvirt hosts on this machine (the second one
# from tests/lib/second-host.sh, sharing the file system: hence --unsafe and relabel='no').
# One guest whose writer keeps writing: a full --mode=begin backup on the main host; a
# pre-check refusal (a shut-off domain whose disk lies where the second host does not see
# it, /run being its own: refused naming the disk, nothing moved, and --live on it is bad
# usage); then the live migration of the persistent guest with --repo: it runs on the
# second host only, defined there, its records intact and still growing, the checkpoint
# redefined there, no journal left; then an incremental backup run against the second host
# (-c DEST_URI) continues the chain (level inc, base the first backup) and its export is a
# consistent copy holding records written after the migration. VS_SLOW=1 adds a --timeout 1
# migration first: aborted, the guest still running on the main host only, no journal.
# Running virtsnap against the second host from the main namespace needs one thing: the
# pull job's NBD socket must be where both see it (VIRTSNAP_RUN_DIR on the shared /tmp;
# the second host's /run is its own).
set -euo pipefail
. "$VS_SOURCE_ROOT/tests/lib/harness.sh"
. "$VS_SOURCE_ROOT/tests/lib/second-host.sh"

vs_test_open --libvirt mig
vs_second_host_start
H2=$VS_H2_URI
vs_guest_disk "$W/disk.qcow2" >/dev/null
vs_h2_guest_start "$D" "$W/disk.qcow2"

field() { jq -r ".domains[0] | .$2" "$1"; }
records_main() { vs_gexec "$D" 'wc -l < /data/records.log'; }
records_h2() { vs_h2_gexec "$D" 'wc -l < /data/records.log'; }

# --- a full backup on the main host -----------------------------------------------------------
vs_virtsnap backup --repo "$REPO" --init --state-dir "$STATE" --mode=begin --json "$D" > "$W/b1.json"
vs_assert_eq "$(field "$W/b1.json" 'ok,.mode,.level' | tr '\n' ,)" "true,begin,full," "full backup on the main host"
ID1=$(jq -r .id "$W/b1.json")
CP1=$(field "$W/b1.json" checkpoint)

# --- a pre-check refusal: a disk the destination does not see ---------------------------------
OFF=vst-mig-off-$$
RUNDIR=/run/vst-mig-$$
vs_on_exit rm -rf "$RUNDIR"
mkdir -p "$RUNDIR"
qemu-img create -q -f qcow2 "$RUNDIR/off.qcow2" 64M
vs_domain_track "$OFF"
vs_guest_xml "$OFF" "$RUNDIR/off.qcow2" > "$W/off.xml"
virsh -q define "$W/off.xml" >/dev/null
rc=0; out=$(vs_virtsnap migrate --state-dir "$STATE" --unsafe "$OFF" "$H2" 2>&1) || rc=$?
vs_assert_eq "$rc" 1 "migrate of a domain whose disk the destination does not see: exit"
vs_assert_contains "$out" "disk vda of domain '$OFF' is $RUNDIR/off.qcow2, which the destination $H2 does not see" \
  "the refusal names the disk"
vs_assert_contains "$out" "--copy-storage" "the refusal says what to do"
vs_assert_eq "$(virsh domstate "$OFF")" "shut off" "the refused domain stays defined on the main host"
[ -z "$(vs_h2_domstate "$OFF")" ] || vs_fail "the refused domain reached the second host"
rc=0; out=$(vs_virtsnap migrate --state-dir "$STATE" --live "$OFF" "$H2" 2>&1) || rc=$?
vs_assert_eq "$rc" 2 "--live on a shut-off domain: exit"
vs_assert_contains "$out" "is shut off: --live moves a running domain" "--live on a shut-off domain"

# --- VS_SLOW=1 (not in CI): --timeout aborts the job, the guest runs on at the source -----------
if [ "${VS_SLOW:-0}" = 1 ]; then
  rc=0; out=$(vs_virtsnap migrate --state-dir "$STATE" --unsafe --timeout 1 "$D" "$H2" 2>&1) || rc=$?
  vs_assert_eq "$rc" 1 "migrate --timeout 1: exit"
  vs_assert_contains "$out" "was not migrated to $H2 within --timeout 1 s: the job was aborted and the guest runs on at the source" \
    "the timeout's message"
  vs_assert_eq "$(virsh domstate "$D")" running "the guest after the aborted migration, on the main host"
  [ -z "$(vs_h2_domstate "$D")" ] || vs_fail "the aborted migration left the guest on the second host"
  vs_assert_eq "$(ls "$STATE/journal" 2>/dev/null | wc -l)" 0 "journals left after the aborted migration"
  vs_wait_agent "$D" 30
fi

# --- live migration of the running, persistent guest ------------------------------------------
before=$(records_main)
vs_virtsnap migrate --repo "$REPO" --state-dir "$STATE" --unsafe --json "$D" "$H2" > "$W/mig.json" ||
  vs_fail "migrate failed: $(cat "$W/mig.json")"
jq -c '{migrated, mode, persistent, elapsed_ms, downtime_ms, checkpoints, checkpoint_redefined, checkpoint_note, error}' "$W/mig.json" >&2
vs_assert_eq "$(jq -r '[.migrated, .mode, .persistent] | join(",")' "$W/mig.json")" "true,live,true" "migration"
vs_assert_eq "$(jq -r '[.checks[] | select(.ok) | .name] | join(",")' "$W/mig.json")" \
  "lock,overlay,destination,cpu,memory,disks" "the pre-checks that passed"
# a running TCG guest's live XML names QEMU's default model (qemu64): that is what is compared
vs_assert_contains "$(jq -r '.checks[] | select(.name == "cpu") | .detail' "$W/mig.json")" \
  "the guest's <cpu>: the destination's is a superset on $H2" "the CPU check"
vs_assert_eq "$(jq -r '[(.checkpoints | join(",")), .checkpoint_redefined] | join(" ")' "$W/mig.json")" "$CP1 true" \
  "checkpoint redefined on the destination (libvirt leaves it behind)"
[ "$(jq '[.progress[] | select(.total > 0 and .processed > 0)] | length' "$W/mig.json")" -ge 1 ] ||
  vs_fail "no progress sample with data in the migration's JSON"
vs_assert_eq "$(vs_h2_domstate "$D")" running "the guest runs on the second host"
virsh domstate "$D" >/dev/null 2>&1 && vs_fail "the guest is still known to the main host after the migration"
vs_assert_eq "$(vs_h2_virsh dominfo "$D" | awk -F': *' '/^Persistent/ {print $2}')" yes "the guest is defined on the second host"
vs_assert_eq "$(ls "$STATE/journal" 2>/dev/null | wc -l)" 0 "journals left after the migration"
vs_h2_wait_agent "$D" 30
after=$(records_h2)
sleep 1
later=$(records_h2)
vs_log "records: $before before the migration, $after after it, $later a second later"
[ "$after" -gt "$before" ] && [ "$later" -gt "$after" ] || vs_fail "the writer did not keep writing ($before, $after, $later)"
vs_h2_gexec "$D" 'cat /data/records.log' > "$W/records.log"
"$VS_GUEST_SRC/checkrecords.py" --allow-torn-tail "$W/records.log" >/dev/null || vs_fail "the guest's records are not intact after the migration"
vs_log "ok: records intact on the second host"

# --- the chain goes on there ------------------------------------------------------------------
mkdir -p "$W/run"
VIRTSNAP_RUN_DIR=$W/run vs_virtsnap -c "$H2" backup --repo "$REPO" --state-dir "$STATE" --mode=begin --level=inc \
  --json "$D" > "$W/b2.json" || vs_fail "backup on the second host failed: $(cat "$W/b2.json")"
jq -c '.domains[0] | {ok, mode, level, base, note, error}' "$W/b2.json" >&2
vs_assert_eq "$(field "$W/b2.json" 'ok,.mode,.level,.base' | tr '\n' ,)" "true,begin,inc,$ID1," \
  "incremental on the second host"
vs_assert_eq "$(field "$W/b2.json" note)" null "the incremental's note (its checkpoint was in place)"
ID2=$(jq -r .id "$W/b2.json")
vs_virtsnap export --repo "$REPO" "$ID2" "$D" vda "$W/inc.qcow2"
"$VS_GUEST_SRC/verify-backup.sh" "$W/inc.qcow2" > "$W/verify.log" || vs_fail "the incremental's export is not consistent: $(cat "$W/verify.log")"
qemu-img convert -O raw "$W/inc.qcow2" "$W/inc.raw"
n=$(debugfs -R "cat /records.log" "$W/inc.raw" 2>/dev/null | wc -l)
[ "$n" -ge "$after" ] || vs_fail "the incremental holds $n records, the guest had $after after the migration"
vs_log "ok: the incremental taken on the second host verifies and holds $n records (>= $after)"
