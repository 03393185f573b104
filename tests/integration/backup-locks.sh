#!/bin/bash
# backup-locks.sh -- one run per domain on the whole host, whatever the state directory:
# backup A (--state-dir stateA) is held in the middle of its copy; backup B of the same
# domain with another state directory fails at once, naming the domain, A's pid and A's
# state directory, and with --lock-wait waits for A and then succeeds. Afterwards the
# guest runs on its original disk, no overlay or journal is left in either state
# directory, both repositories verify, and the lock file names no holder. A bad
# --lock-wait is a usage error.
set -euo pipefail
. "$VS_SOURCE_ROOT/tests/lib/harness.sh"

vs_test_open --libvirt lck

# --- usage ------------------------------------------------------------------------------
for cmd in backup restore; do
  set +e; vs_virtsnap "$cmd" --lock-wait abc "$D" > /dev/null 2> "$W/usage.err"; rc=$?; set -e
  vs_assert_eq "$rc" 2 "exit status of $cmd --lock-wait abc"
  vs_assert_contains "$(cat "$W/usage.err")" "--lock-wait" "$cmd usage error"
done

vs_guest_disk "$W/disk.qcow2" >/dev/null
vs_guest_start "$D" "$W/disk.qcow2"
LOCK=/run/lock/virtsnap/$(virsh domuuid "$D").lock

# --- A holds the domain, B with another state directory is refused ----------------------
# the binary itself in the background ($! must be virtsnap, the pid the lock names)
VIRTSNAP_FAULT=sleep:after-copy:8000 "$VIRTSNAP" backup --repo "$W/repoA" --init --state-dir "$W/stateA" \
  --json "$D" > "$W/a.json" 2> "$W/a.err" &
apid=$!
vs_on_exit kill -9 "$apid"
# B goes once A is past its snapshot: A holds the lock and its overlay is in place.
end=$(( $(date +%s) + 60 ))
until grep -qx "pid=$apid" "$LOCK" 2>/dev/null && ls "$W" | grep -q '\.virtsnap-[0-9]'; do
  kill -0 "$apid" 2>/dev/null || vs_fail "backup A ended before B could start: $(cat "$W/a.err")"
  [ "$(date +%s)" -lt "$end" ] || vs_fail "backup A never took the lock and made its overlay"
  sleep 0.1
done
vs_assert_contains "$(cat "$LOCK")" "state_dir=$W/stateA" "lock file names A's state dir"
vs_assert_contains "$(cat "$LOCK")" "command=backup" "lock file names the command"

t0=$(date +%s%N)
set +e
vs_virtsnap backup --repo "$W/repoB" --init --state-dir "$W/stateB" "$D" > "$W/b1.out" 2> "$W/b1.err"
rc=$?
set -e
took=$(( ($(date +%s%N) - t0) / 1000000 ))
cat "$W/b1.err" >&2
vs_assert_eq "$rc" 1 "exit status of B while A holds the domain"
[ "$took" -lt 5000 ] || vs_fail "B took $took ms to give up (bound 5000)"
vs_log "B refused after $took ms"
kill -0 "$apid" 2>/dev/null || vs_fail "A ended before B was refused: the refusal proves nothing"
vs_assert_contains "$(cat "$W/b1.err")" "domain '$D'" "B's error names the domain"
vs_assert_contains "$(cat "$W/b1.err")" "pid $apid " "B's error names A's pid"
vs_assert_contains "$(cat "$W/b1.err")" "$W/stateA" "B's error names A's state dir"
vs_assert_contains "$(cat "$W/b1.err")" "--lock-wait" "B's error says what to do"

# --- B with --lock-wait waits for A and then backs up -----------------------------------
kill -0 "$apid" 2>/dev/null || vs_fail "A ended before B started to wait"
t0=$(date +%s%N)
vs_virtsnap backup --repo "$W/repoB" --init --state-dir "$W/stateB" --lock-wait 60 --json "$D" > "$W/b2.json"
took=$(( ($(date +%s%N) - t0) / 1000000 ))
vs_log "B with --lock-wait 60 done after $took ms"
[ "$took" -ge 1000 ] || vs_fail "B with --lock-wait took $took ms: it cannot have waited for A"
vs_assert_eq "$(jq -r '.domains[0] | [.name, .ok] | map(tostring) | join(",")' "$W/b2.json")" "$D,true" \
  "B's result after the wait"
set +e; wait "$apid"; rc=$?; set -e
cat "$W/a.err" >&2
vs_assert_eq "$rc" 0 "exit status of A"
vs_assert_eq "$(jq -r '.domains[0] | [.name, .ok] | map(tostring) | join(",")' "$W/a.json")" "$D,true" \
  "A's result"

# --- nothing left behind ----------------------------------------------------------------
vs_assert_eq "$(virsh domstate "$D" | head -1)" running "$D running"
vs_assert_eq "$(virsh domblklist "$D" --details | awk '$3 == "vda" {print $4}')" "$W/disk.qcow2" \
  "$D on its original disk"
vs_assert_eq "$(virsh dumpxml "$D" | grep -c '\.virtsnap-[0-9]' || true)" 0 "$D XML names no overlay"
vs_assert_eq "$(ls "$W" | grep -c '\.virtsnap-[0-9]' || true)" 0 "no overlay files beside the disk"
for s in stateA stateB; do
  vs_assert_eq "$(ls "$W/$s/overlays" 2>/dev/null | wc -l)" 0 "no overlay files in $s"
  vs_assert_eq "$(ls "$W/$s/journal" 2>/dev/null | wc -l)" 0 "no journal left in $s"
  [ ! -e "$W/$s/locks" ] || vs_fail "$s has a locks directory: the lock is not host-wide"
done
vs_assert_eq "$(stat -c %s "$LOCK")" 0 "the released lock names no holder"
vs_virtsnap verify --repo "$W/repoA"
vs_virtsnap verify --repo "$W/repoB"
vs_log "backup-locks: all checks passed"
