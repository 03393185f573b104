#!/bin/bash
# migrate-backup.sh -- backups and migrations arbitrate (issue 17 item 2), on the two-host
# fixture (tests/lib/second-host.sh) with one guest on a shared disk:
#  - a backup of a guest that libvirt is migrating (virsh migrate, slowed by migrate-setspeed)
#    is refused, naming libvirt's migration job;
#  - a backup of a guest that `virtsnap migrate` is migrating is refused, naming it; kill -9
#    of that migrate mid-migration, then `virtsnap recover`: the guest runs on exactly one host;
#  - a migrate requested while a backup has the guest on its overlay waits (saying for whom),
#    then migrates; the backup completes and verifies;
#  - migrate --abort-backup during a pull-mode backup (--mode=begin) stops its copy at once:
#    the backup says "aborted for a migration" (JSON aborted: "migration"), no backup is
#    listed for it, the repository verifies, and the guest runs on the destination, its data
#    intact.
set -euo pipefail
. "$VS_SOURCE_ROOT/tests/lib/harness.sh"
. "$VS_SOURCE_ROOT/tests/lib/second-host.sh"

vs_test_open --libvirt mb
BIN=${VIRTSNAP:-$VS_BUILD_ROOT/tools/virtsnap}
export VIRTSNAP_LOCK_DIR=$W/locks
vs_second_host_start

running_on() {    # how many hosts run $D
  local n=0
  [ "$(virsh domstate "$D" 2>/dev/null | sed -n 1p)" = running ] && n=$((n + 1))
  [ "$(vs_h2_domstate "$D")" = running ] && n=$((n + 1))
  echo "$n"
}
job_active() { local j; j=$(virsh domjobinfo "$D" 2>/dev/null || true); [[ $j =~ Job\ type:\ *Unbounded ]]; }
wait_for() {      # SECS WHAT CMD...: until CMD succeeds
  local secs=$1 end=$(( $(date +%s) + $1 )) what=$2; shift 2
  until "$@"; do [ "$(date +%s)" -lt "$end" ] || vs_fail "$what: not within $secs s"; sleep 0.1; done
}
holder_is() { grep -qx "command=$1" "$VIRTSNAP_LOCK_DIR/$UUID.lock" 2>/dev/null; }
back_home() {     # the guest from the second host back to this one
  vs_h2_virsh migrate --live --unsafe --persistent --undefinesource "$D" qemu:///system \
    --listen-address "$VS_H2_MAIN_IP" >/dev/null || vs_fail "migrating $D back"
}
listed() { vs_virtsnap list --repo "$REPO" --json | jq length; }

vs_guest_disk "$W/disk.qcow2" >/dev/null
vs_h2_guest_start "$D" "$W/disk.qcow2"
UUID=$(virsh domuuid "$D" | sed -n 1p)
vs_gexec "$D" 'dd if=/dev/urandom of=/data/keep bs=1M count=4 conv=fsync 2>/dev/null; sha256sum /data/keep' |
  awk '{print $1}' > "$W/keep.sum"
vs_virtsnap backup --repo "$REPO" --init --state-dir "$STATE" "$D" >/dev/null

# --- a migration libvirt runs for someone else: a backup is refused, naming it ---------------
virsh migrate-setspeed "$D" 1 >/dev/null
virsh migrate --live --unsafe "$D" "$VS_H2_URI" > "$W/virsh-migrate.out" 2>&1 &
vpid=$!
wait_for 30 "virsh migrate's job" job_active
rc=0; "$BIN" backup --repo "$REPO" --state-dir "$STATE" "$D" > /dev/null 2> "$W/refused1.err" || rc=$?
vs_assert_eq "$rc" 1 "backup of a guest libvirt migrates: exit status"
vs_assert_contains "$(cat "$W/refused1.err")" "is migrating (libvirt's outgoing migration job" \
  "backup of a guest libvirt migrates: refused naming the migration"
virsh domjobabort "$D" >/dev/null
wait "$vpid" || true
vs_assert_eq "$(running_on)" 1 "after the aborted virsh migrate: runs on one host"
vs_assert_eq "$(virsh domstate "$D" | sed -n 1p)" running "after the aborted virsh migrate: runs here"

# --- virtsnap migrate in progress: a backup refused naming it; kill -9; recover --------------
"$BIN" migrate --unsafe --state-dir "$STATE" "$D" "$VS_H2_URI" > "$W/m-kill.out" 2> "$W/m-kill.err" &
mpid=$!
wait_for 30 "virtsnap migrate's job" job_active
holder_is migrate || vs_fail "virtsnap migrate does not hold the domain's lock: $(cat "$VIRTSNAP_LOCK_DIR/$UUID.lock")"
rc=0; "$BIN" backup --repo "$REPO" --state-dir "$STATE" --lock-wait 30 "$D" > /dev/null 2> "$W/refused2.err" || rc=$?
vs_assert_eq "$rc" 1 "backup of a guest virtsnap migrates: exit status"
vs_assert_contains "$(cat "$W/refused2.err")" "is migrating (virtsnap migrate, pid $mpid" \
  "backup of a guest virtsnap migrates: refused at once, naming the migration"
kill -9 "$mpid"; wait "$mpid" 2>/dev/null || true
# libvirtd goes on with the migration its killed client began: let it end soon
virsh migrate-setspeed "$D" 100000 >/dev/null 2>&1 || true
vs_assert_eq "$(ls "$STATE/journal" | grep -c '^migrate-' || true)" 1 "kill -9: the migration's journal stays"
job_over() { ! job_active; }
wait_for 60 "the killed migration's job to end" job_over
vs_virtsnap recover --state-dir "$STATE" > "$W/recover.out"
sed "s/^/  recover: /" "$W/recover.out" >&2
vs_assert_contains "$(cat "$W/recover.out")" "migration of domain '$D'" "recover: reports the migration it found"
vs_assert_eq "$(ls "$STATE/journal" | grep -c '^migrate-' || true)" 0 "recover: the migration settled, its journal gone"
vs_assert_eq "$(running_on)" 1 "kill -9 mid-migration, recover: runs on exactly one host"
vs_log "after recover: here '$(virsh domstate "$D" 2>/dev/null | sed -n 1p)', there '$(vs_h2_domstate "$D")'"
if [ "$(vs_h2_domstate "$D")" = running ]; then back_home; fi
virsh migrate-setspeed "$D" 100000 >/dev/null

# --- a migrate during a backup waits for it, then migrates -----------------------------------
VIRTSNAP_FAULT=sleep:after-snapshot:3000 "$BIN" backup --repo "$REPO" --state-dir "$STATE" "$D" \
  > "$W/b-wait.out" 2> "$W/b-wait.err" &
bpid=$!
wait_for 30 "the backup's lock" holder_is backup
vs_virtsnap migrate --unsafe --wait 60 --state-dir "$STATE" "$D" "$VS_H2_URI" > "$W/m-wait.out" 2> "$W/m-wait.err"
vs_assert_contains "$(cat "$W/m-wait.err")" "is in use by virtsnap backup, pid $bpid" "migrate says whom it waits for"
rc=0; wait "$bpid" || rc=$?
vs_assert_eq "$rc" 0 "the backup the migration waited for succeeded"
vs_assert_eq "$(listed)" 2 "the backup the migration waited for is listed"
vs_assert_eq "$(vs_h2_domstate "$D")" running "after waiting: runs on the destination"
vs_assert_eq "$(running_on)" 1 "after waiting: runs on one host"
vs_virtsnap verify --repo "$REPO" > /dev/null
back_home
vs_wait_agent "$D" 60

# --- migrate --abort-backup during a pull-mode backup ----------------------------------------
rm -f "$W/mark"
VIRTSNAP_FAULT=hang:after-snapshot VIRTSNAP_FAULT_MARK=$W/mark "$BIN" backup --json --mode=begin \
  --repo "$REPO" --state-dir "$STATE" "$D" > "$W/b-abort.json" 2> "$W/b-abort.err" &
bpid=$!
wait_for 60 "the pull backup's job" test -e "$W/mark"
t0=$(date +%s%N)
vs_virtsnap migrate --unsafe --abort-backup --wait 60 --state-dir "$STATE" "$D" "$VS_H2_URI" \
  > "$W/m-abort.out" 2> "$W/m-abort.err"
vs_log "migrate --abort-backup took $(( ($(date +%s%N) - t0) / 1000000 )) ms"
vs_assert_contains "$(cat "$W/m-abort.err")" "stopping the backup that holds it (virtsnap backup, pid $bpid" \
  "migrate --abort-backup names the backup it stops"
rc=0; wait "$bpid" || rc=$?
vs_assert_eq "$rc" 143 "the aborted backup: exit status (SIGTERM)"
vs_assert_contains "$(cat "$W/b-abort.err")" "aborted for a migration (virtsnap migrate --abort-backup to $VS_H2_URI" \
  "the aborted backup names the migration"
vs_assert_eq "$(jq -r '.domains[0].aborted' "$W/b-abort.json")" migration "the aborted backup: JSON aborted"
vs_assert_eq "$(jq -r '.id' "$W/b-abort.json")" null "the aborted backup: no id"
vs_assert_eq "$(listed)" 2 "the aborted backup is not listed"
vs_virtsnap verify --repo "$REPO" > /dev/null
vs_assert_eq "$(vs_h2_domstate "$D")" running "after --abort-backup: runs on the destination"
vs_assert_eq "$(running_on)" 1 "after --abort-backup: runs on one host"
vs_h2_wait_agent "$D" 60
vs_assert_eq "$(vs_h2_gexec "$D" 'sha256sum /data/keep' | awk '{print $1}')" "$(cat "$W/keep.sum")" \
  "after --abort-backup: the guest's data intact on the destination"
vs_assert_eq "$(ls -A "$STATE/journal" 2>/dev/null | wc -l)" 0 "no journal left"
[ "$(ls "$W" | grep -c 'virtsnap-' || true)" = 0 ] || vs_fail "an overlay or scratch file of ours is left: $(ls "$W" | grep virtsnap-)"
vs_log "ok"
