#!/bin/bash
# prune.sh -- `virtsnap prune` on a real repository: two shut-off domains backed up several
# times with changing data (qemu-io between backups), then retention per domain. Checks that
# --dry-run removes nothing; --keep-last keeps each domain's newest backups (one domain's many
# backups never push out the other's only one); every kept backup still verifies and exports
# byte-identical to the disk it was taken from; the repository shrinks; no policy at all is
# refused with exit 2 and nothing removed; a prune while a backup holds the repository lock
# removes the manifests and leaves the chunks to the next gc; and kill -9 at random moments
# of a prune never leaves a backup that fails to verify.
set -euo pipefail
. "$VS_SOURCE_ROOT/tests/lib/harness.sh"

vs_test_open --libvirt
A=vst-pra-$$
B=vst-prb-$$

mkdisk() {   # NAME: a 32 MiB qcow2 domain, shut off
  qemu-img create -q -f qcow2 "$W/$1.qcow2" 32M
  chmod 644 "$W/$1.qcow2"
  vs_domain_track "$1"
  vs_guest_xml "$1" "$W/$1.qcow2" > "$W/$1.xml"
  virsh define "$W/$1.xml" >/dev/null
}
backup() {   # NAME: back up NAME; keep a raw copy of its disk as it was, named by backup id
  local id
  id=$(vs_virtsnap backup --repo "$REPO" --state-dir "$STATE" --json "$1" | jq -r .id)
  [ "$id" != null ] || vs_fail "backup of $1 failed"
  qemu-img convert -f qcow2 -O raw "$W/$1.qcow2" "$W/$id.raw"
  echo "$id"
}
ids() { vs_virtsnap list --repo "$REPO" --json | jq -r '.[].id' | sort | tr '\n' ' '; }

vs_virtsnap init --repo "$REPO" --chunk-size 64 >/dev/null
mkdisk "$A"; mkdisk "$B"
b1=$(backup "$B")
a=()
for i in 1 2 3 4; do
  # a region rewritten in place, and new random data (stored anew, freed when pruned)
  qemu-io -f qcow2 -c "write -q -P $((i * 16)) 0 4M" "$W/$A.qcow2" >/dev/null
  head -c 6M /dev/urandom > "$W/rand"
  qemu-io -f qcow2 -c "write -q -s $W/rand $((i * 6))M 6M" "$W/$A.qcow2" >/dev/null
  a+=("$(backup "$A")")
done
vs_log "backups: B ${b1}; A ${a[*]}"
all=$(ids)
size0=$(du -sb "$REPO" | cut -f1)

# no policy: refused, nothing removed
set +e
out=$(vs_virtsnap prune --repo "$REPO" 2>&1); rc=$?
set -e
vs_assert_eq "$rc" 2 "prune without a policy exits 2"
vs_assert_contains "$out" "nothing is removed" "prune without a policy says why"
vs_assert_eq "$(ids)" "$all" "nothing removed without a policy"

# dry run
out=$(vs_virtsnap prune --repo "$REPO" --keep-last 2 --dry-run)
vs_assert_contains "$out" "would remove" "dry run lists what it would remove"
vs_assert_eq "$(ids)" "$all" "dry run removes nothing"

# keep-last 2: A's two newest, and B's only backup
vs_virtsnap prune --repo "$REPO" --keep-last 2 --json > "$W/prune.json"
expect=$(printf '%s\n' "$b1" "${a[2]}" "${a[3]}" | sort | tr '\n' ' ')
vs_assert_eq "$(ids)" "$expect" "kept: B's only backup and A's two newest"
vs_assert_eq "$(jq '[.backups[] | select(.keep | not)] | length' "$W/prune.json")" 2 "JSON: two removed"
vs_assert_contains "$(jq -r ".backups[] | select(.id == \"$b1\") | .reasons" "$W/prune.json")" "$B: last" "B's backup kept as B's last"
[ "$(jq '.gc.chunks_removed' "$W/prune.json")" -gt 0 ] || vs_fail "gc removed no chunk: $(cat "$W/prune.json")"
size1=$(du -sb "$REPO" | cut -f1)
vs_log "repository: $size0 -> $size1 bytes"
[ "$size1" -lt "$size0" ] || vs_fail "the repository did not shrink ($size0 -> $size1)"
vs_virtsnap verify --repo "$REPO" >/dev/null
for id in "$b1" "${a[2]}" "${a[3]}"; do
  dom=$A; [ "$id" = "$b1" ] && dom=$B
  vs_virtsnap export --repo "$REPO" "$id" "$dom" vda "$W/out.raw" --format raw >/dev/null
  cmp "$W/out.raw" "$W/$id.raw" || vs_fail "backup $id does not export as taken"
  rm -f "$W/out.raw"
done

# a backup holds the lock: manifests go, chunks wait for the next gc
a+=("$(backup "$A")")
qemu-io -f qcow2 -c "write -q -P 99 8M 4M" "$W/$A.qcow2" >/dev/null
a+=("$(backup "$A")")
# a shared lock as a backup holds it, by a process that is itself $! (no flock child)
( exec 9<"$REPO/lock"; flock -s 9; exec sleep 30 ) &
holder=$!
vs_on_exit kill "$holder"
sleep 0.3
out=$(vs_virtsnap prune --repo "$REPO" --keep-last 1)
vs_assert_contains "$out" "freed by the next virtsnap gc" "prune under a running backup defers gc"
vs_assert_eq "$(ids)" "$(printf '%s\n' "$b1" "${a[5]}" | sort | tr '\n' ' ')" "kept under the lock"
kill "$holder"; wait "$holder" 2>/dev/null || true
out=$(vs_virtsnap gc --repo "$REPO")
vs_assert_contains "$out" "removed" "gc afterwards"
vs_virtsnap verify --repo "$REPO" >/dev/null

# kill -9 at random moments: whatever is left verifies
for i in 1 2 3 4 5 6; do
  qemu-io -f qcow2 -c "write -q -P $((100 + i)) $((i * 4))M 4M" "$W/$A.qcow2" >/dev/null
  backup "$A" >/dev/null
done
for i in 1 2 3; do
  "$VIRTSNAP" prune --repo "$REPO" --keep-last $((5 - i)) >/dev/null 2>&1 &
  pid=$!
  sleep "0.0$((RANDOM % 9))"
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  vs_virtsnap verify --repo "$REPO" >/dev/null || vs_fail "verify failed after a prune killed ($i)"
done
vs_virtsnap prune --repo "$REPO" --keep-last 1 >/dev/null
vs_assert_eq "$(vs_virtsnap list --repo "$REPO" --json | jq length)" 2 "one backup per domain left"
vs_virtsnap verify --repo "$REPO" >/dev/null
vs_log "prune: all checks passed"
