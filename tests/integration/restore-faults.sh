#!/bin/bash
# restore-faults.sh -- bad input and failing parts: each a clear error naming the thing,
# exit 1, and nothing touched. Unknown backup id; unknown domain (in any backup, and in a
# given one); unknown disk; a name that exists (refused without --force, replaced with it);
# a name with '/' or '..'; a missing or read-only target directory; a target that fills up
# mid-write (ENOSPC, raw and through qemu-nbd: no temp file left, nothing defined); an
# unknown pool; the repository moved away mid-restore (the in-place disk stays as it was);
# a corrupt chunk
# (in place: refused before the disk is touched, naming the chunk: the disk's checksum and
# the definition are unchanged; --as: no temp file left, nothing defined).
set -euo pipefail
. "$VS_SOURCE_ROOT/tests/lib/harness.sh"

vs_test_open --libvirt rf
O=vst-rf-$$-other

expect_fail() {   # NAME ARGS...: run virtsnap restore, expect exit ${EXPECT_RC:-1}; stderr in $W/NAME.err
  local out=$W/$1 rc; shift
  set +e; vs_virtsnap restore --repo "$REPO" --state-dir "$STATE" "$@" > "$out.out" 2> "$out.err"; rc=$?; set -e
  cat "$out.err" >&2
  vs_assert_eq "$rc" "${EXPECT_RC:-1}" "exit status of: restore $*"
}
no_temps() {      # DIR: no temp file of ours left
  vs_assert_eq "$(ls -A "$1" | grep -c 'virtsnap' || true)" 0 "no temp files left in $1"
}

vs_guest_disk "$W/disk.qcow2" >/dev/null
vs_guest_start "$D" "$W/disk.qcow2"
# 16 MiB that does not compress: more than the small file system below holds.
vs_gexec "$D" 'dd if=/dev/urandom of=/data/bulk bs=1M count=16 conv=fsync 2>/dev/null' >/dev/null
vs_virtsnap backup --repo "$REPO" --init --state-dir "$STATE" --json "$D" > "$W/b.json"
ID=$(jq -r .id "$W/b.json")
[ "$ID" != null ] || vs_fail "backup failed"
mkdir -p "$W/t"

# Unknown backup, domain, disk
expect_fail nobackup --backup 19990101T000000Z-000000 "$D"
vs_assert_contains "$(cat "$W/nobackup.err")" "19990101T000000Z-000000" "unknown backup named"
expect_fail nodomain "vst-no-such-$$"
vs_assert_contains "$(cat "$W/nodomain.err")" "no backup in $REPO holds a domain 'vst-no-such-$$'" "unknown domain"
expect_fail nodomain2 --backup "$ID" "vst-no-such-$$"
vs_assert_contains "$(cat "$W/nodomain2.err")" "backup $ID has no domain 'vst-no-such-$$' (it holds: $D)" "unknown domain in a backup"
expect_fail nodisk --disks vdz --target-dir "$W/t" "$D"
vs_assert_contains "$(cat "$W/nodisk.err")" "has no disk vdz (it has: vda)" "unknown disk"

# Names
expect_fail exists --target-dir "$W/t" "$D"
vs_assert_contains "$(cat "$W/exists.err")" "a domain '$D' already exists" "existing name refused"
# A name that cannot be is bad usage (exit 2), refused before anything is looked at.
EXPECT_RC=2 expect_fail slash --as "vst-a/b" --target-dir "$W/t" "$D"
vs_assert_contains "$(cat "$W/slash.err")" "'vst-a/b' cannot be a domain name: it contains '/'" "name with /"
EXPECT_RC=2 expect_fail dots --as "vst-a..b" --target-dir "$W/t" "$D"
vs_assert_contains "$(cat "$W/dots.err")" "it contains '..'" "name with .."
expect_fail running "$D"
vs_assert_contains "$(cat "$W/running.err")" "domain '$D' is running" "running domain in place"
vs_domain_track "$O"
vs_virtsnap restore --repo "$REPO" --state-dir "$STATE" --as "$O" --target-dir "$W/t" --define "$D" >/dev/null
uuid_o=$(virsh domuuid "$O" | sed -n 1p)
expect_fail exists2 --as "$O" --target-dir "$W/t" --define "$D"
vs_assert_contains "$(cat "$W/exists2.err")" "a domain '$O' already exists" "existing --as name refused"
vs_virtsnap restore --repo "$REPO" --state-dir "$STATE" --as "$O" --target-dir "$W/t" --define --force --json "$D" > "$W/force.json"
vs_assert_eq "$(jq -r '.domains[0].disks[0].action' "$W/force.json")" replaced "--force replaces the file"
vs_assert_eq "$(virsh domuuid "$O" | sed -n 1p)" "$uuid_o" "--force keeps the replaced domain's UUID"
no_temps "$W/t"
# A running domain's disk file (here $O's, renamed to $O2) is refused even with --force;
# nothing is written.
O2="vst-rf-$$-o2"
vs_domain_track "$O2"
virsh domrename "$O" "$O2" >/dev/null
virsh start "$O2" >/dev/null
expect_fail others --as "$O" --target-dir "$W/t" --force "$D"
vs_assert_contains "$(cat "$W/others.err")" \
  "is a disk of domain $O2 (running): it is not overwritten while that domain runs" "a running domain's disk"
virsh destroy "$O2" >/dev/null
virsh domrename "$O2" "$O" >/dev/null
no_temps "$W/t"

# Targets
expect_fail nodir --as "vst-rf-$$-x" --target-dir "$W/no/such/dir" "$D"
vs_assert_contains "$(cat "$W/nodir.err")" "$W/no/such/dir: No such file or directory" "missing target dir"
mkdir -p "$W/ro"
mount --bind "$W/ro" "$W/ro" && vs_on_exit umount -l "$W/ro"
mount -o remount,bind,ro "$W/ro"
expect_fail rofs --as "vst-rf-$$-x" --target-dir "$W/ro" "$D"
vs_assert_contains "$(cat "$W/rofs.err")" "cannot write in target directory $W/ro: Read-only file system" "read-only target"
mkdir -p "$W/full"
mount -t tmpfs -o size=8M tmpfs "$W/full" && vs_on_exit umount -l "$W/full"
vs_domain_track "vst-rf-$$-full"
expect_fail enospc --as "vst-rf-$$-full" --target-dir "$W/full" --format raw --define "$D"
vs_assert_contains "$(cat "$W/enospc.err")" "No space left on device" "ENOSPC reported"
vs_assert_contains "$(cat "$W/enospc.err")" "disk vda" "ENOSPC names the disk"
vs_assert_eq "$(ls -A "$W/full" | wc -l)" 0 "nothing left on the full file system"
virsh domstate "vst-rf-$$-full" >/dev/null 2>&1 && vs_fail "a domain was defined although its disk failed"
# The same through qemu-nbd (qcow2): the error comes back in an NBD reply, writes in flight.
expect_fail enospc2 --as "vst-rf-$$-full" --target-dir "$W/full" --format qcow2 --define "$D"
vs_assert_contains "$(cat "$W/enospc2.err")" "No space left on device" "ENOSPC reported (qcow2)"
vs_assert_contains "$(cat "$W/enospc2.err")" "disk vda" "ENOSPC names the disk (qcow2)"
vs_assert_eq "$(ls -A "$W/full" | wc -l)" 0 "nothing left on the full file system (qcow2)"
virsh domstate "vst-rf-$$-full" >/dev/null 2>&1 && vs_fail "a domain was defined although its qcow2 disk failed"
expect_fail nopool --as "vst-rf-$$-x" --pool "vst-no-such-pool-$$" "$D"
vs_assert_contains "$(cat "$W/nopool.err")" "storage pool 'vst-no-such-pool-$$' not found" "unknown pool"

# --- a corrupt chunk: refused before the disk is touched -------------------------------------------
virsh shutdown "$D" --mode agent >/dev/null
vs_wait_shutoff "$D" 60
sum=$(md5sum < "$W/disk.qcow2")
virsh dumpxml --inactive "$D" > "$W/def-before.xml"
# The repository vanishes mid-restore (once the write phase has begun: the restore drops a
# mark there and waits 3 s): the disk stays as it was.
set +e
rm -f "$W/writing"
VIRTSNAP_FAULT_RESTORE_DELAY_MS=3000 VIRTSNAP_FAULT_RESTORE_MARK=$W/writing \
  vs_virtsnap restore --repo "$REPO" --state-dir "$STATE" "$D" > "$W/gone.out" 2> "$W/gone.err" &
pid=$!
for _ in $(seq 1 300); do [ -e "$W/writing" ] || ! kill -0 "$pid" 2>/dev/null && break; sleep 0.1; done
[ -e "$W/writing" ] || vs_fail "the restore never reached its write phase: $(cat "$W/gone.err")"
mv "$REPO" "$REPO.gone"
wait "$pid"; rc=$?
set -e
mv "$REPO.gone" "$REPO"
cat "$W/gone.err" >&2
vs_assert_eq "$rc" 1 "exit status when the repository vanished"
vs_assert_contains "$(cat "$W/gone.err")" "disk vda" "the disk is named"
vs_assert_contains "$(cat "$W/gone.err")" "nothing of domain '$D' was changed" "nothing changed"
vs_assert_eq "$(md5sum < "$W/disk.qcow2")" "$sum" "disk checksum unchanged after the repository vanished"
no_temps "$W"
# The last chunk: restore re-hashes chunks as it writes them, so it meets this one with most
# of the disk already written to a temp file, which must go.
chunk=$(jq -r '.domains[0].disks[0].chunks[-1][2]' "$REPO/backups/$ID.json")
f=$REPO/chunks/${chunk:0:2}/$chunk
[ -f "$f" ] || vs_fail "chunk file $f not found"
printf '\x5a' | dd of="$f" bs=1 seek=$(( $(stat -c %s "$f") / 2 )) conv=notrunc 2>/dev/null
expect_fail corrupt "$D"
vs_assert_contains "$(cat "$W/corrupt.err")" "$chunk" "the corrupt chunk is named"
vs_assert_contains "$(cat "$W/corrupt.err")" "corrupt" "it says corrupt"
vs_assert_contains "$(cat "$W/corrupt.err")" "nothing was touched" "and that nothing was touched"
vs_assert_eq "$(md5sum < "$W/disk.qcow2")" "$sum" "disk checksum unchanged"
virsh dumpxml --inactive "$D" | diff "$W/def-before.xml" - >&2 || vs_fail "the definition changed"
no_temps "$W"
vs_domain_track "vst-rf-$$-c"
expect_fail corrupt3 --as "vst-rf-$$-c" --target-dir "$W/t" --define "$D"
vs_assert_contains "$(cat "$W/corrupt3.err")" "$chunk" "the corrupt chunk is named (--as)"
no_temps "$W/t"
[ ! -e "$W/t/vst-rf-$$-c-vda.qcow2" ] || vs_fail "a disk was installed although a chunk was corrupt"
virsh domstate "vst-rf-$$-c" >/dev/null 2>&1 && vs_fail "a domain was defined although a chunk was corrupt"
# The same with --force on a running domain: it is not even stopped.
virsh start "$D" >/dev/null
vs_wait_agent "$D" 120
expect_fail corrupt2 --force "$D"
vs_assert_contains "$(cat "$W/corrupt2.err")" "$chunk" "the corrupt chunk is named (--force)"
vs_assert_eq "$(virsh domstate "$D" | sed -n 1p)" running "the domain was not stopped"
vs_log "restore-faults: all checks passed"
