#!/usr/bin/env bash
# vault-reflink: `virtsnap vault` (block/repo/repo-vault.c, tools/cmd-vault.c) on real reflink
# snapshots on an XFS loop file system (mkfs.xfs -m reflink=1), no libvirt: a snapshot-only
# backup (vault-mkbackup: the snapshots and the manifest `backup --no-copy` leaves) is vaulted
# while the disks go on changing; each disk's export then equals its snapshot's bytes and
# verify passes. A vault killed with SIGKILL half way through a disk, or just before its commit,
# leaves the backup snapshot-only and valid, and a vault after completes; then nothing is left to
# vault. SIGTERM while vaulting the second disk commits the first and exits 143. A
# snapshot deleted by hand is an error naming backup, domain and disk; usage errors exit 2.
. "$VS_SOURCE_ROOT/tests/lib/harness.sh"
vs_require_root
command -v mkfs.xfs >/dev/null || vs_skip "mkfs.xfs missing (xfsprogs; scripts/deps.sh --test)"
[ -e /dev/loop-control ] || vs_skip "no loop devices"
MKBACKUP=${MKBACKUP:-$VS_BUILD_ROOT/tests/block/snapshot/vault-mkbackup}
W=$(vs_workdir)
M=$W/xfs
R=$W/repo

truncate -s 1G "$W/xfs.img"
mkfs.xfs -q -m reflink=1 "$W/xfs.img"
mkdir -p "$M"
vs_on_exit umount "$M"
mount -o loop "$W/xfs.img" "$M"
mkdir -p "$M/pool" "$M/base"
VDA=$M/pool/vm1-vda.img
VDB=$M/pool/vm1-vdb.img
# vda: 48 MiB of data with a 4 MiB hole and a run of zeros; vdb: 16 MiB, mostly a hole
head -c 48M /dev/urandom > "$VDA"
dd if=/dev/zero of="$VDA" bs=1M seek=20 count=4 conv=notrunc status=none
fallocate -p -o $((30 << 20)) -l $((4 << 20)) "$VDA"
truncate -s 16M "$VDB"
head -c 3M /dev/urandom | dd of="$VDB" bs=1M seek=5 conv=notrunc status=none
sync
sha() { sha256sum "$1" | cut -d' ' -f1; }
fails() {   # fails RC NEEDLE CMD...
  local want=$1 needle=$2 out rc=0; shift 2
  out=$("$@" 2>&1) || rc=$?
  [ "$rc" = "$want" ] || vs_fail "expected exit $want from $*, got $rc: $out"
  vs_assert_contains "$out" "$needle" "$*"
}
in_repo() {   # in_repo ID TARGET: the manifest's in_repo of that disk (true when absent)
  jq -r --arg t "$2" '.domains[0].disks[] | select(.target == $t) | if has("in_repo") then .in_repo else true end' \
    "$R/backups/$1.json"
}

SHA_A=$(sha "$VDA"); SHA_B=$(sha "$VDB")
ID=$("$MKBACKUP" --repo "$R" --chunk-kib 64 --reflink "$M/base" --domain vm1 vda="$VDA" vdb="$VDB") ||
  vs_fail "vault-mkbackup failed"
vs_log "snapshot-only backup $ID"
vs_assert_eq "$(in_repo "$ID" vda),$(in_repo "$ID" vdb)" "false,false" "in_repo before vault"
# the guest goes on writing: vault must read the snapshots, not the disks
dd if=/dev/urandom of="$VDA" bs=1M seek=2 count=8 conv=notrunc status=none
dd if=/dev/urandom of="$VDB" bs=1M count=16 conv=notrunc status=none
sync

# usage errors: exit 2, nothing done
fails 2 "give one BACKUP" vs_virtsnap vault --repo "$R"
fails 2 "give one BACKUP" vs_virtsnap vault --repo "$R" "$ID" extra
fails 2 "Unknown option --bogus" vs_virtsnap vault --repo "$R" --bogus "$ID"
fails 2 "no repository" env -u VIRTSNAP_REPO "${VIRTSNAP:-$VS_BUILD_ROOT/tools/virtsnap}" vault "$ID"
fails 1 "no-such-backup" vs_virtsnap vault --repo "$R" no-such-backup
out=$(vs_virtsnap vault --repo "$R" --json --bogus "$ID" 2>/dev/null) && vs_fail "--bogus with --json succeeded"
vs_assert_eq "$(jq -r .error <<<"$out" | head -c 32)" "vault: Unknown option --bogus (s" "--json usage error in the output"

# killed with SIGKILL half way through the first disk: the backup stays snapshot-only and valid
rc=0
VIRTSNAP_FAULT=vault-copy vs_virtsnap vault --repo "$R" "$ID" >/dev/null 2>&1 || rc=$?
vs_assert_eq "$rc" 137 "vault killed by SIGKILL at the fault point"
vs_assert_eq "$(in_repo "$ID" vda),$(in_repo "$ID" vdb)" "false,false" "in_repo after the kill"
vs_assert_eq "$(jq '[.domains[0].disks[].chunks | length] | add' "$R/backups/$ID.json")" 0 "no chunks recorded"
vs_virtsnap verify --repo "$R" "$ID" >/dev/null || vs_fail "verify after the killed vault"
vs_assert_eq "$(vs_virtsnap list --repo "$R" --json | jq -r '.[0].id')" "$ID" "the backup is listed"
# chunks are written to tmp/ and renamed into chunks/ in batches: either counts
left=$(find "$R/chunks" "$R/tmp" -type f -name '*' | wc -l)
[ "$left" -gt 5 ] || vs_fail "the killed vault wrote $left chunks: it was not killed while copying"
vs_log "ok: killed vault left the backup snapshot-only ($left chunk files written meanwhile)"

# killed just before the manifest's replacement: the same
rc=0
VIRTSNAP_FAULT=vault-commit vs_virtsnap vault --repo "$R" "$ID" >/dev/null 2>&1 || rc=$?
vs_assert_eq "$rc" 137 "vault killed by SIGKILL before the commit"
vs_assert_eq "$(in_repo "$ID" vda),$(in_repo "$ID" vdb)" "false,false" "in_repo after the kill before the commit"
vs_virtsnap verify --repo "$R" "$ID" >/dev/null || vs_fail "verify after the second killed vault"

# a vault that runs to its end completes; its report
out=$(vs_virtsnap vault --repo "$R" "$ID") || vs_fail "vault failed: $out"
vs_assert_contains "$out" "vm1/vda: vaulted from reflink virtsnap-$ID-vda in full: read " "text report, vda"
vs_assert_contains "$out" "vm1/vdb: vaulted from reflink virtsnap-$ID-vdb in full: read " "text report, vdb"
vs_assert_contains "$out" "vault: backup $ID: 2 disk(s) vaulted" "text report, end"
out=$(vs_virtsnap vault --repo "$R" --json "$ID") || vs_fail "vault --json after it: $out"
vs_assert_eq "$(jq -r '.vaulted, .error' <<<"$out" | tr '\n' ' ')" "0 null " "vault --json result when done"
vs_assert_eq "$(jq -r '[.disks[].state] | join(",")' <<<"$out")" "in_repo,in_repo" "disk states"
vs_assert_eq "$(jq -r '.disks[0].snapshot.provider' <<<"$out")" reflink "provider"
read_a=$(jq -r '.domains[0].disks[0].bytes_read' "$R/backups/$ID.json")
# the 4 MiB hole is never read (the zeros are: a file reports them as data)
[ "$read_a" -le $((44 << 20)) ] && [ "$read_a" -ge $((40 << 20)) ] || vs_fail "vda read $read_a bytes"
vs_assert_eq "$(in_repo "$ID" vda),$(in_repo "$ID" vdb)" "true,true" "in_repo after vault"
vs_assert_eq "$(jq -r '.domains[0].disks[0].snapshot.handle' "$R/backups/$ID.json")" "virtsnap-$ID-vda" \
  "the snapshot record stays"
[ -f "$M/base/virtsnap-snapshots/virtsnap-$ID-vda" ] || vs_fail "vault removed the snapshot"
vs_assert_eq "$(vs_virtsnap list --repo "$R" --json | jq -r ".[0].data_bytes")" $(( (40 + 3) << 20 )) \
  "list: 40 MiB of vda (not its zeros and hole) and 3 MiB of vdb, from the rewritten summary"
for t in vda vdb; do
  vs_virtsnap export --repo "$R" "$ID" vm1 $t "$W/out-$t.raw" >/dev/null || vs_fail "export $t"
done
vs_assert_eq "$(sha "$W/out-vda.raw")" "$SHA_A" "vda exported equals its snapshot"
vs_assert_eq "$(sha "$W/out-vdb.raw")" "$SHA_B" "vdb exported equals its snapshot"
vs_virtsnap verify --repo "$R" "$ID" >/dev/null || vs_fail "verify after vault"
vs_virtsnap gc --repo "$R" >/dev/null || vs_fail "gc"
vs_virtsnap verify --repo "$R" >/dev/null || vs_fail "verify after gc"
[ -z "$(ls -A "$R/tmp")" ] || vs_fail "temp files left after gc: $(ls -A "$R/tmp")"
vs_log "ok: vaulted, exports equal the snapshots, verify passes"

# nothing left to vault
out=$(vs_virtsnap vault --repo "$R" "$ID") || vs_fail "vault of a vaulted backup failed"
vs_assert_contains "$out" "has nothing to vault" "vault of a vaulted backup"

# interrupted (SIGTERM) while copying its second disk: the first is committed, exit 143
ID3=$("$MKBACKUP" --repo "$R" --reflink "$M/base" --domain vm1 vda="$VDA" vdb="$VDB") || vs_fail "vault-mkbackup 3"
wait_mark() {
  for _ in $(seq 200); do [ -e "$W/mark" ] && return 0; sleep 0.1; done
  vs_fail "vault never reached the fault point"
}
VIRTSNAP_FAULT=sleep:vault-copy:1500 VIRTSNAP_FAULT_MARK=$W/mark \
  "${VIRTSNAP:-$VS_BUILD_ROOT/tools/virtsnap}" vault --repo "$R" "$ID3" >"$W/int.out" 2>&1 &
pid=$!
wait_mark; rm "$W/mark"      # half way through vda: let it go on
wait_mark                    # half way through vdb
kill -TERM $pid     # a background job of a script ignores SIGINT
rc=0; wait $pid || rc=$?

vs_assert_eq "$rc" 143 "vault interrupted by SIGTERM"
vs_assert_eq "$(in_repo "$ID3" vda),$(in_repo "$ID3" vdb)" "true,false" "in_repo after the interrupt"
vs_assert_contains "$(cat "$W/int.out")" "vault: backup $ID3, domain vm1, disk vdb: copy: " "interrupt message"
vs_assert_contains "$(cat "$W/int.out")" "interrupted by SIGTERM; run vault again to finish" "interrupt advice"
out=$(vs_virtsnap vault --repo "$R" --json "$ID3") || vs_fail "vault after the interrupt: $out"
vs_assert_eq "$(jq -r '[.disks[].state] | join(",")' <<<"$out")" "in_repo,vaulted" "vault after the interrupt"
vs_virtsnap verify --repo "$R" "$ID3" >/dev/null || vs_fail "verify after the interrupted vault"

# a snapshot deleted by hand under a backup that needs it
ID2=$("$MKBACKUP" --repo "$R" --reflink "$M/base" --domain vm1 vda="$VDA") || vs_fail "vault-mkbackup 2"
rm "$M/base/virtsnap-snapshots/virtsnap-$ID2-vda"
fails 1 "vault: backup $ID2, domain vm1, disk vda: snapshot: vm1/vda: expose" vs_virtsnap vault --repo "$R" "$ID2"
fails 1 "the storage snapshot is gone" vs_virtsnap vault --repo "$R" "$ID2"
vs_assert_eq "$(in_repo "$ID2" vda)" false "in_repo after the failed vault"
# the repository is intact, but that backup cannot be restored any more: verify says so
fails 1 "BAD snapshot: backup $ID2, domain vm1, disk vda: its reflink snapshot virtsnap-$ID2-vda no longer exists" \
  vs_virtsnap verify --repo "$R"
vs_virtsnap verify --repo "$R" "$ID3" >/dev/null || vs_fail "verify of the vaulted backup after the failed vault"
vs_log "PASS"
