#!/bin/bash
# backup-push.sh -- `backup --push`: libvirt's push-mode backup job on one real guest
# whose writer keeps writing. QEMU writes each disk (a full backup) or only its changed
# clusters (an incremental: the file's backing is the live disk, which must never be
# read) into a qcow2 of virtsnap's, which virtsnap reads into the repository and removes.
# Full, then ~5% written, then inc: reads and stores about the change and verifies; an
# incremental and a pull-mode full of the same (paused) instant export the same bytes;
# a raw second disk is written whole. The XML a virsh user has (mode='push', libvirt's
# default) is taken (a <target> of the user's is refused: backup-xml.sh). Faults: the guest
# stopped while the job writes, the push directory too small for what the job will write
# (refused before the freeze) or mounted after the guest started (QEMU cannot see it: the
# error says why), virtsnap killed
# while the job runs (recover ends it and removes its files), bad options; each
# followed by a backup that succeeds and verifies.
set -euo pipefail
. "$VS_SOURCE_ROOT/tests/lib/harness.sh"

vs_test_open --libvirt push
PUSH=$W/push
MiB=$((1024 * 1024))
mkdir -p "$PUSH"

# A file system that fills up, mounted before the guest starts: QEMU sees only the mounts
# that existed when it started (its own mount namespace; mounts do not propagate here).
mkdir -p "$W/small" "$W/late"
mount -t tmpfs -o size=4m tmpfs "$W/small"
vs_on_exit umount "$W/small"
vs_guest_disk "$W/disk.qcow2" >/dev/null
head -c $((8 * MiB)) /dev/urandom > "$W/raw.img"
truncate -s 32M "$W/raw.img"
chmod 644 "$W/raw.img"
vs_guest_start "$D" "$W/disk.qcow2" \
  "<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='$W/raw.img'/><target dev='vdb' bus='virtio'/></disk>"

backup() {   # backup OUT.json [ARGS...]: a push-mode backup of $D, its JSON in OUT
  local out=$1; shift
  vs_virtsnap backup --repo "$REPO" --init --state-dir "$STATE" --push-dir "$PUSH" --json "$@" "$D" > "$out"
  jq -c '.domains[0] | {ok, mode, level, base, note, error, disks: [.disks[] | {bytes_read, bytes_stored, data_path, read}]}' "$out" >&2
}
field() { jq -r ".domains[0] | .$2" "$1"; }
jobtype() { virsh domjobinfo "$D" | awk -F': *' '/Job type/ {sub(/ +$/, "", $2); print $2}'; }
no_leftovers() {   # after a run: no job, no push file or journal left
  vs_assert_eq "$(jobtype)" None "$1: backup job ended"
  vs_assert_eq "$(find "$PUSH" "$STATE/scratch" -type f 2>/dev/null | wc -l)" 0 "$1: push files left"
  vs_assert_eq "$(ls "$STATE/journal" 2>/dev/null | wc -l)" 0 "$1: journals left"
}
verify_export() {   # verify_export ID NAME: export ID's vda, check it is a consistent copy
  vs_virtsnap export --repo "$REPO" "$1" "$D" vda "$W/$2.qcow2"
  "$VS_GUEST_SRC/verify-backup.sh" "$W/$2.qcow2" >/dev/null || vs_fail "$2: export of $1 is not a consistent copy"
  rm -f "$W/$2.qcow2"
  vs_log "ok: $2 ($1) verifies"
}
backup_ok() {   # backup_ok NAME LEVEL WHAT [ARGS...]: must succeed at LEVEL; its export verifies
  local name=$1 level=$2 what=$3; shift 3
  backup "$W/$name.json" "$@"
  vs_assert_eq "$(field "$W/$name.json" 'ok,.level' | tr '\n' ,)" "true,$level," "$what"
  no_leftovers "$name"
  verify_export "$(jq -r .id "$W/$name.json")" "$name"
}

# --- bad options: refused, nothing touched ---------------------------------------------
if out=$(vs_virtsnap backup --repo "$REPO" --init --state-dir "$STATE" --push --mode=overlay "$D" 2>&1); then
  vs_fail "--push with --mode=overlay was accepted"
fi
vs_assert_contains "$out" "--push and --push-dir choose how a backup job" "--push with --mode=overlay"
if out=$(vs_virtsnap backup --repo "$REPO" --init --state-dir "$STATE" --push-dir "$W/nope" "$D" 2>&1); then
  vs_fail "a missing --push-dir was accepted"
fi
vs_assert_contains "$out" "--push-dir $W/nope: no such directory" "a missing --push-dir"
echo "<domainbackup mode='pull'><server transport='unix' socket='/run/x.sock'/><disks><disk name='vda'/></disks></domainbackup>" > "$W/pull.xml"
if out=$(vs_virtsnap backup --repo "$REPO" --init --state-dir "$STATE" --push --backup-xml "$W/pull.xml" "$D" 2>&1); then
  vs_fail "--push with a pull-mode --backup-xml was accepted"
fi
vs_assert_contains "$out" "asks for a pull-mode job (mode='pull'), --push for a push-mode one" "--push with a pull XML"
vs_assert_eq "$(virsh checkpoint-list "$D" --name | sed '/^$/d' | wc -l)" 0 "checkpoints after refused runs"

# --- full, then ~5% written, then incremental -----------------------------------------
backup_ok p1 full "first push backup"
vs_assert_eq "$(field "$W/p1.json" 'mode,.disks[0].data_path,.disks[1].data_path' | tr '\n' ,)" \
  "begin,push,push," "a push-mode begin job"
vs_assert_contains "$(field "$W/p1.json" backup_xml)" "mode='push'" "the job's XML"
ID1=$(jq -r .id "$W/p1.json")

written=$((48 * MiB))   # of a 1 GiB disk
vs_gexec "$D" "dd if=/dev/urandom of=/data/inc1 bs=1M count=$((written / MiB)) conv=fsync 2>/dev/null" >/dev/null
backup_ok p2 inc "incremental push backup"
vs_assert_eq "$(field "$W/p2.json" base)" "$ID1" "its base"
vs_assert_contains "$(field "$W/p2.json" 'disks[0].read')" "changed since $ID1" "incremental disk read"
read2=$(field "$W/p2.json" 'disks[0].bytes_read')
stored2=$(field "$W/p2.json" 'disks[0].bytes_stored')
vs_log "push incremental after $written bytes written: read $read2, stored $stored2"
# Only the changed clusters are in the file: about the write, plus ext4's metadata and the
# writer's log; the rest of each touched chunk comes from the base, not from a read.
[ "$read2" -ge "$written" ] && [ "$read2" -le $((written * 3 / 2 + 8 * MiB)) ] ||
  vs_fail "push incremental read $read2 bytes for $written written"
[ "$stored2" -ge $((written * 9 / 10)) ] && [ "$stored2" -le $((written * 3 / 2)) ] ||
  vs_fail "push incremental stored $stored2 bytes for $written written"
# The raw disk cannot hold a bitmap: written whole, and it says so.
vs_assert_contains "$(field "$W/p2.json" 'disks[1].read')" "raw" "the raw disk's read"
vs_virtsnap export --repo "$REPO" "$(jq -r .id "$W/p2.json")" "$D" vdb "$W/vdb.raw" --format raw
cmp -s "$W/vdb.raw" "$W/raw.img" || vs_fail "the raw disk's export differs from the disk"
rm -f "$W/vdb.raw"

# --- one paused instant: a push incremental equals a pull full and the disk itself ---------
vs_gexec "$D" 'dd if=/dev/urandom of=/data/inc2 bs=1M count=8 conv=fsync 2>/dev/null; rm -f /data/inc1; fstrim /data 2>/dev/null; sync' >/dev/null
virsh suspend "$D" >/dev/null
backup "$W/p3.json"
vs_virtsnap backup --repo "$W/repo-pull" --init --state-dir "$STATE" --mode=begin --level=full --json "$D" > "$W/f3.json"
ID3=$(jq -r .id "$W/p3.json")
vs_assert_eq "$(field "$W/p3.json" 'ok,.level' | tr '\n' ,)" "true,inc," "push incremental of the paused guest"
vs_virtsnap export --repo "$REPO" "$ID3" "$D" vda "$W/inc3.raw" --format raw
vs_virtsnap export --repo "$W/repo-pull" "$(jq -r .id "$W/f3.json")" "$D" vda "$W/full3.raw" --format raw
qemu-img compare -U -q -f raw -F qcow2 "$W/inc3.raw" "$W/disk.qcow2" ||
  vs_fail "push incremental $ID3 differs from the paused guest's disk"
cmp -s "$W/inc3.raw" "$W/full3.raw" || vs_fail "push incremental and pull full of the same instant differ"
virsh resume "$D" >/dev/null
rm -f "$W/inc3.raw" "$W/full3.raw"
vs_log "ok: a push incremental of one instant equals the disk and a pull full backup of it"

# --- the XML a virsh user has: push mode is libvirt's default ------------------------------
cat > "$W/virsh-backup.xml" <<XML
<domainbackup>
  <disks>
    <disk name='vda'/>
    <disk name='vdb' backup='no'/>
  </disks>
</domainbackup>
XML
vs_virtsnap backup --repo "$REPO" --state-dir "$STATE" --backup-xml "$W/virsh-backup.xml" --json "$D" > "$W/x1.json"
jq -c '.domains[0] | {ok, level, error, disks: [.disks[] | {target, data_path}]}' "$W/x1.json" >&2
vs_assert_eq "$(field "$W/x1.json" 'ok,.level,.disks[0].data_path' | tr '\n' ,)" "true,inc,push," \
  "a virsh push-mode backup XML"
vs_assert_eq "$(field "$W/x1.json" 'disks | length')" 1 "the disk left out stays out"
no_leftovers backup-xml
verify_export "$(jq -r .id "$W/x1.json")" x1

# --- the guest stops while the push job writes ------------------------------------------
cps_before=$(virsh checkpoint-list "$D" --name | sed '/^$/d' | sort | tr '\n' ' ')
set +e
VIRTSNAP_FAULT=sleep:push-wait:4000 "$VIRTSNAP" backup --repo "$REPO" --state-dir "$STATE" \
  --push-dir "$PUSH" --json "$D" > "$W/stop.json" 2> "$W/stop.err" &
pid=$!
set -e
for _ in $(seq 150); do   # until the journal says thawed: the job has begun, the wait not ended
  grep -qs '"thawed"' "$STATE"/journal/*.jsonl && break
  sleep 0.1
done
grep -qs '"thawed"' "$STATE"/journal/*.jsonl || vs_fail "the push backup never thawed: $(cat "$W/stop.err")"
virsh destroy "$D" >/dev/null
rc=0; wait "$pid" || rc=$?
[ "$rc" != 0 ] || vs_fail "a push backup whose guest stopped under it succeeded"
vs_assert_eq "$(field "$W/stop.json" ok)" false "push backup of a guest that stopped"
vs_assert_contains "$(field "$W/stop.json" error)" "stopped while its push-mode backup job was writing" "its error"
vs_assert_eq "$(find "$PUSH" -type f | wc -l)" 0 "push files after the guest stopped"
vs_assert_eq "$(ls "$STATE/journal" 2>/dev/null | wc -l)" 0 "journals after the guest stopped"
rm -f "$(vs_console_log "$D")"
virsh start "$D" >/dev/null
vs_wait_ready "$D" "$(vs_console_log "$D")" 120 || vs_fail "$D did not boot again"
vs_wait_agent "$D"
vs_assert_eq "$(virsh checkpoint-list "$D" --name | sed '/^$/d' | sort | tr '\n' ' ')" "$cps_before" \
  "the failed run's checkpoint is gone"
backup_ok p4 inc "push incremental after the guest stopped and started again"

# --- too little room for the push job: refused before any freeze, the guest untouched -----
# (A push job that runs out of room fails the guest's own writes: QEMU's copy-before-write
# filter breaks them. A test guest whose writer kept writing did not survive it.)
cps_before=$(virsh checkpoint-list "$D" --name | sed '/^$/d' | sort | tr '\n' ' ')
vs_gexec "$D" 'dd if=/dev/urandom of=/data/big bs=1M count=32 conv=fsync 2>/dev/null' >/dev/null
rc=0
vs_virtsnap backup --repo "$REPO" --state-dir "$STATE" --push-dir "$W/small" --json "$D" \
  > "$W/full.json" 2> "$W/full.err" || rc=$?
[ "$rc" != 0 ] || vs_fail "a push backup into a directory without room succeeded"
vs_log "said: $(field "$W/full.json" error)"
vs_assert_eq "$(field "$W/full.json" 'ok,.freeze_ms' | tr '\n' ,)" "false,null," "push backup into a small directory"
vs_assert_contains "$(field "$W/full.json" error)" "its push job would write about" "its error"
vs_assert_contains "$(field "$W/full.json" error)" "into $W/small, which has" "its error names the directory"
vs_assert_eq "$(jq -r .id "$W/full.json")" null "no backup written"
vs_assert_eq "$(find "$W/small" -type f | wc -l)" 0 "files left in the small directory"
vs_assert_eq "$(virsh checkpoint-list "$D" --name | sed '/^$/d' | sort | tr '\n' ' ')" "$cps_before" \
  "no checkpoint from the refused run"
vs_assert_eq "$(virsh domstate "$D" | sed -n 1p)" running "the guest after the refused run"
# A push directory mounted after the guest started: QEMU cannot see it, and the error says so.
mount -t tmpfs -o size=64m tmpfs "$W/late"
vs_on_exit umount "$W/late"
rc=0
vs_virtsnap backup --repo "$REPO" --state-dir "$STATE" --push-dir "$W/late" --json "$D" \
  > "$W/late.json" 2> "$W/late.err" || rc=$?
if [ "$rc" = 0 ]; then
  vs_log "mounts propagate into QEMU's namespace here: a late push directory works"
  verify_export "$(jq -r .id "$W/late.json")" late
else
  vs_log "said: $(field "$W/late.json" error)"
  vs_assert_contains "$(field "$W/late.json" error)" "but QEMU cannot see it" "a late-mounted --push-dir"
  vs_assert_eq "$(find "$W/late" -type f | wc -l)" 0 "files left in the late directory"
fi
backup_ok p4b inc "push incremental after the directory filled up"
vs_assert_eq "$(field "$W/p4b.json" base)" "$(jq -r .id "$W/p4.json")" "its base"

# --- virtsnap killed while the job runs: recover ends it and removes its files -------------
rc=0
VIRTSNAP_FAULT=push-wait "$VIRTSNAP" backup --repo "$REPO" --state-dir "$STATE" --push-dir "$PUSH" \
  "$D" > "$W/killed.out" 2>&1 || rc=$?
[ "$rc" = 137 ] || vs_fail "the fault at push-wait did not kill virtsnap (exit $rc): $(cat "$W/killed.out")"
[ "$(find "$PUSH" -type f | wc -l)" -gt 0 ] || vs_fail "the killed run left no push file to recover"
vs_virtsnap recover --state-dir "$STATE" > "$W/recover.out" 2>&1 || vs_fail "recover: $(cat "$W/recover.out")"
cat "$W/recover.out" >&2
no_leftovers recover
backup_ok p5 inc "push incremental after the kill"
vs_assert_eq "$(field "$W/p5.json" base)" "$(jq -r .id "$W/p4b.json")" "its base"

vs_virtsnap verify --repo "$REPO"
vs_log "backup-push: all checks passed"
