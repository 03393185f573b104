#!/bin/bash
# backup-crash.sh -- kill -9 of virtsnap at every step of a backup and at random moments,
# and a virtsnap that hangs while guests are frozen. The guardian must thaw within
# --max-freeze without anyone running a command; after `virtsnap recover` every guest
# runs, thawed, on its original chain, no overlay or journal is left, and every backup
# that completed still verifies.
set -euo pipefail
. "$VS_SOURCE_ROOT/tests/lib/harness.sh"

vs_test_open --libvirt crash

freeze_status() { virsh qemu-agent-command "$D" '{"execute":"guest-fsfreeze-status"}' --timeout 5 2>/dev/null || echo silent; }
wait_thawed() {   # SECS: until the guest says thawed
  local end=$(( $(date +%s%N) / 1000000 + $1 * 1000 ))
  while [ $(( $(date +%s%N) / 1000000 )) -lt "$end" ]; do
    case "$(freeze_status)" in *thawed*) return 0;; esac
    sleep 0.1
  done
  return 1
}
clean() {
  vs_assert_eq "$(virsh domstate "$D" | head -1)" running "running"
  case "$(freeze_status)" in *thawed*) ;; *) vs_fail "guest not thawed: $(freeze_status)";; esac
  vs_assert_eq "$(virsh domblklist "$D" --details | awk '$3 == "vda" {print $4}')" "$W/disk.qcow2" "original disk"
  vs_assert_eq "$(qemu-img info -U --output=json "$W/disk.qcow2" | jq -r '.["backing-filename"] // "none"')" none "no backing file"
  vs_assert_eq "$(ls "$W" | grep -c '\.virtsnap-[0-9]' || true)" 0 "no overlay file"
  vs_assert_eq "$(ls "$STATE/journal" 2>/dev/null | wc -l)" 0 "no journal"
  vs_assert_eq "$(ls "$REPO/tmp" 2>/dev/null | wc -l)" 0 "no temporary file in the repository"
  # a reader started by the killed virtsnap must not outlive it
  sleep 0.2
  vs_assert_eq "$(pgrep -fc "qemu-nbd.*$W/" || true)" 0 "no qemu-nbd of the killed run left"
}

vs_guest_disk "$W/disk.qcow2" >/dev/null
vs_guest_start "$D" "$W/disk.qcow2"
vs_virtsnap backup --repo "$REPO" --init --state-dir "$STATE" "$D" >/dev/null   # one good backup
good=$(vs_virtsnap list --repo "$REPO" --json | jq length)

for point in before-freeze after-freeze after-snapshot after-thaw after-copy before-commit commit-started \
    after-commit before-manifest; do
  vs_log "--- kill -9 at $point"
  set +e
  VIRTSNAP_FAULT=$point vs_virtsnap backup --repo "$REPO" --state-dir "$STATE" "$D" > "$W/$point.out" 2>&1
  rc=$?
  set -e
  vs_assert_eq "$rc" 137 "virtsnap killed at $point"
  # The guardian thaws at once when the backup process dies.
  wait_thawed 5 || vs_fail "guest still frozen 5 s after virtsnap died at $point"
  vs_virtsnap recover --state-dir "$STATE" | sed 's/^/  recover: /' >&2
  clean
  vs_assert_eq "$(vs_virtsnap list --repo "$REPO" --json | jq length)" "$good" "no backup from the killed run at $point"
done
vs_virtsnap verify --repo "$REPO"

# kill -9 at random moments; enough data that a backup takes a while to copy. The
# window is timed on a second backup: the first stores the new chunks and is slower
# than the runs being killed, which find them all already stored.
vs_gexec "$D" 'dd if=/dev/urandom of=/data/bulk bs=1M count=96 conv=fsync 2>/dev/null' >/dev/null
vs_virtsnap backup --repo "$REPO" --state-dir "$STATE" "$D" >/dev/null
t0=$(date +%s%N)
vs_virtsnap backup --repo "$REPO" --state-dir "$STATE" "$D" >/dev/null
took_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
vs_log "an uninterrupted backup takes ${took_ms} ms: kills land inside that"
kills=0 tries=0
while [ "$kills" -lt 4 ] && [ "$tries" -lt 10 ]; do
  tries=$((tries + 1))
  delay=$(awk -v s=$RANDOM -v t="$took_ms" 'BEGIN { srand(s); printf "%.3f", (0.05 + rand() * 0.8) * t / 1000 }')
  vs_log "--- kill -9 after ${delay}s"
  # the binary itself in the background ($! must be virtsnap, not a subshell)
  "$VIRTSNAP" backup --repo "$REPO" --state-dir "$STATE" "$D" > "$W/rand$tries.out" 2>&1 &
  pid=$!
  sleep "$delay"
  killed=no
  kill -9 "$pid" 2>/dev/null && killed=yes
  wait "$pid" 2>/dev/null || true
  vs_log "killed: $killed ($(tail -n 1 "$W/rand$tries.out"))"
  [ "$killed" = no ] || kills=$((kills + 1))
  wait_thawed 5 || vs_fail "guest still frozen after a kill at ${delay}s"
  vs_virtsnap recover --state-dir "$STATE" | sed 's/^/  recover: /' >&2
  clean
done
[ "$kills" -ge 4 ] || vs_fail "only $kills of $tries random kills hit a running backup"
vs_virtsnap verify --repo "$REPO"

# A hang while frozen: the guardian thaws by --max-freeze, virtsnap still hanging.
vs_log "--- hang after the freeze, --max-freeze 2"
VIRTSNAP_FAULT=hang:after-freeze "$VIRTSNAP" backup --repo "$REPO" --state-dir "$STATE" --max-freeze 2 "$D" \
  > "$W/hang.out" 2>&1 &
pid=$!
vs_on_exit kill -9 "$pid"
end=$(( $(date +%s) + 30 ))
until case "$(freeze_status)" in *frozen*) true;; *) false;; esac; do
  [ "$(date +%s)" -lt "$end" ] || vs_fail "the guest was never frozen"
  sleep 0.05
done
t0=$(date +%s%N)
wait_thawed 6 || vs_fail "guardian did not thaw within 6 s"
held=$(( ($(date +%s%N) - t0) / 1000000 ))
vs_log "thawed by the guardian ${held} ms after the freeze was seen (bound 2000 ms)"
[ "$held" -le 2600 ] || vs_fail "the guest stayed frozen ${held} ms, over --max-freeze 2 s"
kill -0 "$pid" 2>/dev/null || vs_fail "virtsnap was expected to still hang"
kill -9 "$pid"; wait "$pid" 2>/dev/null || true
vs_virtsnap recover --state-dir "$STATE" | sed 's/^/  recover: /' >&2
clean
vs_assert_contains "$(cat "$STATE/guardian.log")" "freeze bound reached" "guardian log"
vs_virtsnap verify --repo "$REPO"
vs_log "backup-crash: all checks passed"
