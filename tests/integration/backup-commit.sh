#!/bin/bash
# backup-commit.sh -- a guest that writes faster than the commit copies never stays on its
# overlay. The commit is slowed on purpose (--commit-bandwidth 1 MiB/s, --commit-timeout 2)
# while a churn loop in the guest rewrites 16 MiB again and again, and virtsnap waits 4 s
# before the commit (VIRTSNAP_FAULT=sleep:before-commit:4000) so that the overlay holds
# several MiB whatever the machine's load: the first commit cannot converge; virtsnap then freezes the guest (guarded like the snapshot's freeze, within
# --max-freeze), commits at full speed, pivots and thaws. Checked: exit 0, the note says so,
# the guest runs thawed on its original disk with no overlay or journal left, and the backup
# verifies with verify-backup.sh. With --quiesce=off there is no freeze to fall back on: the
# backup is still complete and listed, the command fails naming the overlay and
# `virtsnap recover`, and recover then commits it back.
set -euo pipefail
. "$VS_SOURCE_ROOT/tests/lib/harness.sh"

vs_test_open --libvirt bc

freeze_status() { virsh qemu-agent-command "$D" '{"execute":"guest-fsfreeze-status"}' --timeout 5 2>/dev/null || echo silent; }
on_original() {
  vs_assert_eq "$(virsh domstate "$D" | head -1)" running "running ($1)"
  case "$(freeze_status)" in *thawed*) ;; *) vs_fail "guest not thawed ($1): $(freeze_status)";; esac
  vs_assert_eq "$(virsh domblklist "$D" --details | awk '$3 == "vda" {print $4}')" "$W/disk.qcow2" "original disk ($1)"
  vs_assert_eq "$(find "$W" "$STATE" -name '*.virtsnap-*' | wc -l)" 0 "no overlay left ($1)"
  vs_assert_eq "$(ls "$STATE/journal" 2>/dev/null | wc -l)" 0 "no journal left ($1)"
}

vs_guest_disk "$W/disk.qcow2" >/dev/null
vs_guest_start "$D" "$W/disk.qcow2"
vs_virtsnap init --repo "$REPO" >/dev/null
# Rewrites 16 MiB over and over, in its own session and detached from guest-exec's pipes,
# so that the call returns and the loop outlives it.
vs_gexec "$D" 'setsid sh -c "while :; do dd if=/dev/urandom of=/data/churn bs=1M count=16 conv=fsync 2>/dev/null; done" </dev/null >/dev/null 2>&1 &' >/dev/null
vs_on_exit vs_gexec "$D" 'pkill -f "of=/data/churn"'

vs_log "--- slowed commit, guest with an agent: finished frozen"
set +e
VIRTSNAP_FAULT=sleep:before-commit:4000 \
  vs_virtsnap backup --repo "$REPO" --state-dir "$STATE" --commit-bandwidth 1 --commit-timeout 2 --json "$D" \
  > "$W/b1.json"
rc=$?
set -e
cat "$W/b1.json" >&2
vs_assert_eq "$rc" 0 "backup exit status"
vs_assert_eq "$(jq -r '.domains[0] | [.ok, .consistency] | map(tostring) | join(",")' "$W/b1.json")" "true,quiesced" "result"
note=$(jq -r '.domains[0].note // ""' "$W/b1.json")
vs_assert_contains "$note" "did not converge within 2.0 s" "note: the first commit timed out"
vs_assert_contains "$note" "finished with the guest frozen for" "note: finished frozen"
held=$(echo "$note" | sed -n 's/.*frozen for \([0-9]*\) ms.*/\1/p')
[ -n "$held" ] && [ "$held" -le 10000 ] || vs_fail "frozen for '$held' ms, over --max-freeze 10 s"
on_original "after the frozen commit"
ID=$(jq -r .id "$W/b1.json")
vs_virtsnap export --repo "$REPO" "$ID" "$D" vda "$W/export1.qcow2" >/dev/null
"$VS_GUEST_SRC/verify-backup.sh" "$W/export1.qcow2" >&2 || vs_fail "the backup does not verify"

vs_log "--- slowed commit, --quiesce=off: left on the overlay, recover commits it"
set +e
VIRTSNAP_FAULT=sleep:before-commit:4000 \
  vs_virtsnap backup --repo "$REPO" --state-dir "$STATE" --quiesce=off --commit-bandwidth 1 --commit-timeout 2 \
  --json "$D" > "$W/b2.json" 2> "$W/b2.err"
rc=$?
set -e
cat "$W/b2.json" "$W/b2.err" >&2
vs_assert_eq "$rc" 1 "backup exit status without a freeze to fall back on"
err=$(jq -r '.domains[0].error // ""' "$W/b2.json")
vs_assert_contains "$err" "did not converge" "error: the commit timed out"
vs_assert_contains "$err" "until \`virtsnap recover\` commits it" "error: says what to do"
ovl=$(virsh domblklist "$D" --details | awk '$3 == "vda" {print $4}')
case "$ovl" in *virtsnap-*) ;; *) vs_fail "expected the guest on its overlay, it is on $ovl";; esac
vs_assert_contains "$err" "$ovl" "error names the overlay"
ID2=$(jq -r .id "$W/b2.json")
[ "$ID2" != null ] || vs_fail "the copied backup was not kept"
vs_virtsnap verify --repo "$REPO" "$ID2" >/dev/null
vs_virtsnap recover --state-dir "$STATE" | sed 's/^/  recover: /' >&2
on_original "after recover"
vs_assert_eq "$(qemu-img info -U --output=json "$W/disk.qcow2" | jq -r '.["backing-filename"] // "none"')" none "no backing file"
vs_log "backup-commit: all checks passed"
