#!/bin/bash
# backup-incremental.sh -- `backup --mode=begin` on one real guest whose writer keeps
# writing: a full backup through libvirt's pull-mode backup job, then the guest writes
# ~5% of its disk, then an incremental reads and stores about that much (the rest of
# the disk comes from the full backup's manifest) and its export is a quiesced copy;
# then the guest writes more and a differential (--level=diff) reads both changes since
# the full backup, exports exactly the paused guest's disk, and the inc chain goes on
# from it; an incremental and a full backup of the same instant (guest paused) export
# the same bytes. A differential whose full backup's checkpoint is gone is a full one. Then each failure the chain must heal from, each followed by a backup that
# succeeds and verifies: an incremental with no previous backup (another repository,
# whose chain leaves the first one's alone), a checkpoint deleted by hand, the VM
# restarted (cleanly, and after QEMU was killed: bitmaps inconsistent), the image replaced
# while it was off (bitmaps missing), virtsnap killed
# while the job runs (recover ends it), the NBD export unreachable, the repository moved to
# another path (the chain goes on). A raw second disk
# cannot hold a bitmap: it is read whole every time, says so, and exports as it is.
set -euo pipefail
. "$VS_SOURCE_ROOT/tests/lib/harness.sh"

vs_test_open --libvirt inc
REPO2=$W/repo2
MiB=$((1024 * 1024))

vs_guest_disk "$W/disk.qcow2" >/dev/null
head -c $((16 * 1024 * 1024)) /dev/urandom > "$W/raw.img"
truncate -s 64M "$W/raw.img"
chmod 644 "$W/raw.img"
vs_guest_start "$D" "$W/disk.qcow2" \
  "<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='$W/raw.img'/><target dev='vdb' bus='virtio'/></disk>"

backup() {   # backup OUT.json [ARGS...]: a begin-mode backup of $D, its JSON in OUT
  local out=$1; shift
  vs_virtsnap backup --repo "$REPO" --init --state-dir "$STATE" --mode=begin --json "$@" "$D" > "$out"
  jq -c '.domains[0] | {ok, mode, level, base, freeze_ms, note, error, disks: [.disks[] | {bytes_read, bytes_stored, read}]}' "$out" >&2
}
field() { jq -r ".domains[0] | .$2" "$1"; }
verify_export() {   # verify_export REPO ID NAME: export ID, check it is a consistent copy
  vs_virtsnap export --repo "$1" "$2" "$D" vda "$W/$3.qcow2"
  "$VS_GUEST_SRC/verify-backup.sh" "$W/$3.qcow2" >/dev/null || vs_fail "$3: export of $2 is not a consistent copy"
  vs_log "ok: $3 ($2) verifies"
}
no_leftovers() {   # after a run: no backup job, no scratch or socket left
  vs_assert_eq "$(jobtype)" None "$1: backup job ended"
  vs_assert_eq "$(find "$STATE/scratch" -type f 2>/dev/null | wc -l)" 0 "$1: scratch files left"
  vs_assert_eq "$(ls "$STATE/journal" 2>/dev/null | wc -l)" 0 "$1: journals left"
}
jobtype() { virsh domjobinfo "$D" | awk -F': *' '/Job type/ {sub(/ +$/, "", $2); print $2}'; }
backup_ok() {   # backup_ok NAME LEVEL WHAT [ARGS...]: must succeed at LEVEL; its export verifies
  local name=$1 level=$2 what=$3; shift 3
  backup "$W/$name.json" "$@"
  vs_assert_eq "$(field "$W/$name.json" 'ok,.level' | tr '\n' ,)" "true,$level," "$what"
  verify_export "$REPO" "$(jq -r .id "$W/$name.json")" "$name"
}
checkpoints() { virsh checkpoint-list "$D" --name | sed '/^$/d' | sort | tr '\n' ' '; }

# --- full, then ~5% written, then incremental ----------------------------------------------
if out=$(vs_virtsnap backup --repo "$REPO" --init --state-dir "$STATE" --level=inc "$D" 2>&1); then
  vs_fail "--level without --mode=begin was accepted"
fi
vs_assert_contains "$out" "--level goes with --mode=begin" "--level alone"
backup "$W/b1.json" --level=inc
vs_assert_eq "$(field "$W/b1.json" 'ok,.mode,.level' | tr '\n' ,)" "true,begin,full," "first backup"
vs_assert_contains "$(field "$W/b1.json" note)" "no earlier backup" "first backup's note"
ID1=$(jq -r .id "$W/b1.json")
vs_assert_eq "$(checkpoints)" "$(field "$W/b1.json" checkpoint) " "checkpoints after the full backup"
no_leftovers full
verify_export "$REPO" "$ID1" full1

written=$((48 * MiB))   # of a 1 GiB disk
vs_gexec "$D" "dd if=/dev/urandom of=/data/inc1 bs=1M count=$((written / MiB)) conv=fsync 2>/dev/null" >/dev/null
backup "$W/b2.json"
vs_assert_eq "$(field "$W/b2.json" 'ok,.mode,.level,.base' | tr '\n' ,)" "true,begin,inc,$ID1," "incremental"
vs_assert_eq "$(field "$W/b2.json" consistency)" quiesced "incremental's consistency"
freeze_ms=$(field "$W/b2.json" freeze_ms)
[ "$freeze_ms" -ge 0 ] && [ "$freeze_ms" -lt 5000 ] || vs_fail "freeze_ms $freeze_ms not in [0, 5000)"
ID2=$(jq -r .id "$W/b2.json")
read2=$(field "$W/b2.json" 'disks[0].bytes_read')
stored2=$(field "$W/b2.json" 'disks[0].bytes_stored')
vs_log "incremental after $written bytes written: read $read2, stored $stored2"
# It reads what changed (whole 1 MiB chunks around it, plus the writer's log and ext4's
# metadata), not the disk: between the write and twice it plus 16 MiB.
[ "$read2" -ge "$written" ] && [ "$read2" -le $((2 * written + 16 * MiB)) ] ||
  vs_fail "incremental read $read2 bytes for $written written"
# urandom does not compress: what it stores is the write, give or take metadata.
[ "$stored2" -ge $((written * 9 / 10)) ] && [ "$stored2" -le $((written * 3 / 2)) ] ||
  vs_fail "incremental stored $stored2 bytes for $written written"
vs_assert_contains "$(field "$W/b2.json" 'disks[0].read')" "changed since $ID1" "incremental disk read"
vs_assert_contains "$(field "$W/b2.json" 'disks[1].read')" "raw" "the raw disk's read"
[ "$(field "$W/b2.json" 'disks[1].bytes_read')" -ge $((16 * MiB)) ] || vs_fail "the raw disk was not read whole"
vs_virtsnap export --repo "$REPO" "$ID2" "$D" vdb "$W/vdb.raw" --format raw
cmp -s "$W/vdb.raw" "$W/raw.img" || vs_fail "the raw disk's export differs from the disk"
rm -f "$W/vdb.raw"
cps() { printf '%s\n' "$@" | sort | tr '\n' ' '; }   # cps NAME...: as checkpoints prints them
vs_assert_eq "$(checkpoints)" "$(cps "$(field "$W/b1.json" checkpoint)" "$(field "$W/b2.json" checkpoint)")" \
  "the full backup's and the newest checkpoint of this repository"
no_leftovers incremental
verify_export "$REPO" "$ID2" inc2

# --- differential: everything since the full backup, the disk as it is ----------------------
writtenB=$((32 * MiB))
vs_gexec "$D" "dd if=/dev/urandom of=/data/diff1 bs=1M count=$((writtenB / MiB)) conv=fsync 2>/dev/null" >/dev/null
# Paused, QEMU has flushed the image: what the differential holds must be the disk itself.
virsh suspend "$D" >/dev/null
backup "$W/bd.json" --level=diff
IDD=$(jq -r .id "$W/bd.json")
vs_virtsnap export --repo "$REPO" "$IDD" "$D" vda "$W/diff.raw" --format raw
qemu-img compare -U -q -f raw -F qcow2 "$W/diff.raw" "$W/disk.qcow2" ||
  vs_fail "differential $IDD differs from the paused guest's disk"
virsh resume "$D" >/dev/null
rm -f "$W/diff.raw"
vs_log "ok: the differential's export equals the paused guest's disk"
vs_assert_eq "$(field "$W/bd.json" 'ok,.mode,.level,.base' | tr '\n' ,)" "true,begin,diff,$ID1," "differential"
readD=$(field "$W/bd.json" 'disks[0].bytes_read')
vs_log "differential after $written + $writtenB bytes written since the full backup: read $readD"
[ "$readD" -ge $((written + writtenB)) ] && [ "$readD" -le $((2 * (written + writtenB) + 16 * MiB)) ] ||
  vs_fail "differential read $readD bytes for $written + $writtenB written since the full backup"
vs_assert_contains "$(field "$W/bd.json" 'disks[0].read')" "changed since $ID1" "differential disk read"
vs_assert_eq "$(checkpoints)" "$(cps "$(field "$W/b1.json" checkpoint)" "$(field "$W/bd.json" checkpoint)")" \
  "the full backup's and the differential's checkpoints"
no_leftovers differential
# A paused guest is not frozen: the copy is crash-consistent (its journal replays clean).
vs_virtsnap export --repo "$REPO" "$IDD" "$D" vda "$W/diff.qcow2"
"$VS_GUEST_SRC/verify-backup.sh" "$W/diff.qcow2" --crash-consistent >/dev/null ||
  vs_fail "diff: export of $IDD is not a crash-consistent copy"

# --- the same instant, incremental and full: identical exports -----------------------------
vs_gexec "$D" 'dd if=/dev/urandom of=/data/inc2 bs=1M count=8 conv=fsync 2>/dev/null' >/dev/null
virsh suspend "$D" >/dev/null
backup "$W/b3.json"
backup "$W/b4.json" --level=full
virsh resume "$D" >/dev/null
vs_assert_eq "$(field "$W/b3.json" 'ok,.level,.base' | tr '\n' ,)" "true,inc,$IDD," \
  "incremental of the paused guest, after the differential"
[ "$(field "$W/b3.json" 'disks[0].bytes_read')" -le $((2 * 8 * MiB + 16 * MiB)) ] ||
  vs_fail "the incremental after the differential read $(field "$W/b3.json" 'disks[0].bytes_read') bytes for 8 MiB written"
vs_assert_eq "$(field "$W/b4.json" 'ok,.level' | tr '\n' ,)" "true,full," "full backup of the paused guest"
[ "$(field "$W/b3.json" 'disks[0].bytes_read')" -lt "$(field "$W/b4.json" 'disks[0].bytes_read')" ] ||
  vs_fail "the incremental read no less than the full backup"
ID3=$(jq -r .id "$W/b3.json"); ID4=$(jq -r .id "$W/b4.json")
vs_virtsnap export --repo "$REPO" "$ID3" "$D" vda "$W/inc3.raw" --format raw
vs_virtsnap export --repo "$REPO" "$ID4" "$D" vda "$W/full4.raw" --format raw
cmp -s "$W/inc3.raw" "$W/full4.raw" || vs_fail "incremental $ID3 and full $ID4 of the same instant differ"
vs_log "ok: incremental and full backup of one instant export the same bytes"
rm -f "$W/inc3.raw" "$W/full4.raw"
vs_virtsnap verify --repo "$REPO"

# --- incremental with no previous backup: another repository, its own chain -----------------
vs_virtsnap backup --repo "$REPO2" --init --state-dir "$STATE" --mode=auto --level=inc --json "$D" > "$W/r2.json"
vs_assert_eq "$(field "$W/r2.json" 'ok,.mode,.level' | tr '\n' ,)" "true,begin,full," "first backup in a second repository"
vs_assert_contains "$(field "$W/r2.json" note)" "no earlier backup" "second repository's note"
verify_export "$REPO2" "$(jq -r .id "$W/r2.json")" repo2
backup "$W/b5.json"
vs_assert_eq "$(field "$W/b5.json" 'ok,.level,.base' | tr '\n' ,)" "true,inc,$ID4," \
  "the first repository's chain survives the second's"
vs_assert_eq "$(checkpoints)" "$(cps "$(field "$W/b4.json" checkpoint)" "$(field "$W/b5.json" checkpoint)" "$(field "$W/r2.json" checkpoint)")" \
  "each repository's own checkpoints"

# --- a checkpoint deleted by hand ---------------------------------------------------------
virsh checkpoint-delete "$D" "$(field "$W/b5.json" checkpoint)" >/dev/null
backup_ok b6 full "after the checkpoint was deleted"
vs_assert_contains "$(field "$W/b6.json" note)" "no longer exists" "why it fell back"
backup_ok b7 inc "the chain is back"
virsh checkpoint-delete "$D" "$(field "$W/b6.json" checkpoint)" >/dev/null
backup_ok b7d full "a differential whose full backup's checkpoint was deleted" --level=diff
vs_assert_contains "$(field "$W/b7d.json" note)" "no full backup of this domain" "why it fell back"
vs_assert_eq "$(field "$W/b7d.json" note | wc -l)" 1 "said in one line"

# --- the VM restarted between backups: cleanly (bitmaps stored), then QEMU killed --------
boot_again() {
  rm -f "$(vs_console_log "$D")"
  virsh start "$D" >/dev/null
  vs_wait_ready "$D" "$(vs_console_log "$D")" 120 || vs_fail "$D did not boot again"
  vs_wait_agent "$D"
}
restart() {   # restart HOW: destroy (QEMU stops cleanly on SIGTERM) or kill (SIGKILL)
  if [ "$1" = kill ]; then
    kill -9 "$(cat "/run/libvirt/qemu/$D.pid")"
    vs_wait_shutoff "$D" 60
  else
    virsh destroy "$D" >/dev/null
  fi
  boot_again
}
restart destroy
backup_ok b8 inc "incremental after a clean restart"
restart kill
backup_ok b8k full "backup after QEMU was killed"
vs_assert_contains "$(field "$W/b8k.json" note)" "broken bitmap" "why it fell back"
backup_ok b9 inc "incremental after the restarts"

# --- the image replaced while the domain was off: the checkpoint's bitmap is not in it ------
virsh shutdown "$D" --mode agent >/dev/null
vs_wait_shutoff "$D" 60
qemu-img convert -q -f qcow2 -O qcow2 "$W/disk.qcow2" "$W/disk.new.qcow2"   # same data, no bitmaps
mv "$W/disk.new.qcow2" "$W/disk.qcow2"; chmod 644 "$W/disk.qcow2"
boot_again
backup_ok b9r full "backup after the image was replaced"
vs_assert_contains "$(field "$W/b9r.json" note)" "bitmap" "why it fell back"
backup_ok b9s inc "incremental on the new image"

# --- virtsnap killed while the job runs ---------------------------------------------------
killed_at() {   # killed_at POINT: a begin-mode backup that kills itself there
  local rc=0
  VIRTSNAP_FAULT=$1 "$VIRTSNAP" backup --repo "$REPO" --state-dir "$STATE" --mode=begin "$D" \
    > "$W/killed.out" 2>&1 || rc=$?
  [ "$rc" = 137 ] || vs_fail "the fault at $1 did not kill virtsnap (exit $rc): $(cat "$W/killed.out")"
}
killed_at after-copy
vs_assert_eq "$(jobtype)" Unbounded "the job outlives virtsnap"
vs_virtsnap recover --state-dir "$STATE" > "$W/recover.out" 2>&1 || vs_fail "recover: $(cat "$W/recover.out")"
cat "$W/recover.out" >&2
vs_assert_contains "$(cat "$W/recover.out")" "ended the leftover backup job" "recover's report"
no_leftovers recover
vs_assert_eq "$(checkpoints)" "$(cps "$(field "$W/b9r.json" checkpoint)" "$(field "$W/b9s.json" checkpoint)" "$(field "$W/r2.json" checkpoint)")" \
  "the killed run's checkpoint is gone"
backup_ok b10 inc "backup after the kill"
vs_assert_eq "$(field "$W/b10.json" base)" "$(jq -r .id "$W/b9s.json")" "its base"
# Killed again right after the thaw, before the copy: the next backup recovers by itself.
killed_at after-thaw
backup_ok b10b inc "backup right after a kill, without recover"
vs_assert_contains "$(jq -r '.recovered | join("; ")' "$W/b10b.json")" "ended the leftover backup job" \
  "what the backup recovered first"
vs_assert_eq "$(field "$W/b10b.json" base)" "$(jq -r .id "$W/b10.json")" "its base"

# --- the NBD export unreachable -------------------------------------------------------------
set +e
VIRTSNAP_FAULT_NBD_SOCKET=$W/no-such.sock "$VIRTSNAP" backup --repo "$REPO" --state-dir "$STATE" \
  --mode=begin --json "$D" > "$W/b11.json" 2> "$W/b11.err"
rc=$?
set -e
[ "$rc" != 0 ] || vs_fail "a backup with its export unreachable succeeded"
vs_assert_eq "$(field "$W/b11.json" ok)" false "backup with the export unreachable"
vs_assert_contains "$(field "$W/b11.json" error)" "connect" "its error"
no_leftovers unreachable
backup_ok b12 inc "backup after the unreachable export"
vs_assert_eq "$(field "$W/b12.json" base)" "$(jq -r .id "$W/b10b.json")" "its base"

# --- paths given relative to the working directory --------------------------------------
# libvirt, QEMU, the guardian and a later recover each have a working directory of their
# own: a relative --repo or --state-dir must reach them as the directory the user meant.
# (It once failed with libvirt's "Extra element server in interleave": the NBD socket path
# under a relative state directory was not absolute.)
mkdir -p "$W/rel"
(cd "$W/rel" && vs_virtsnap backup --repo repo --init --state-dir state --mode=begin --json "$D") \
  > "$W/rel.json" 2> "$W/rel.err" || vs_fail "backup with relative paths: $(cat "$W/rel.err")"
vs_assert_eq "$(field "$W/rel.json" ok)" true "backup with relative --repo and --state-dir"
vs_assert_eq "$(jobtype)" None "relative paths: backup job ended"
vs_assert_eq "$(find "$W/rel/state" -path '*scratch*' -type f | wc -l)" 0 "relative paths: scratch files left"
verify_export "$W/rel/repo" "$(jq -r .id "$W/rel.json")" rel
vda_src() { virsh domblklist "$D" --details | awk '$3 == "vda" { print $4 }'; }
VDA=$(vda_src)
if out=$(cd "$W/rel" && vs_virtsnap backup --repo repo --state-dir state --mode=overlay \
           --overlay-dir ovl "$D" 2>&1); then
  vs_fail "a backup with a missing --overlay-dir succeeded"
fi
vs_assert_contains "$out" "--overlay-dir ovl: no such directory" "a missing --overlay-dir"
vs_assert_eq "$(vda_src)" "$VDA" "vda after the refused backup"
mkdir "$W/rel/ovl"
(cd "$W/rel" && vs_virtsnap backup --repo repo --state-dir state --mode=overlay --overlay-dir ovl \
  --json "$D") > "$W/rel2.json" 2> "$W/rel2.err" || vs_fail "overlay backup with relative paths: $(cat "$W/rel2.err")"
vs_assert_eq "$(field "$W/rel2.json" ok)" true "overlay backup with a relative --overlay-dir"
vs_assert_eq "$(vda_src)" "$VDA" \
  "vda after the overlay backup with relative paths"
vs_assert_eq "$(ls "$W/rel/ovl" | wc -l)" 0 "relative paths: overlays left"

# --- the repository moved to another path: its chain goes on -----------------------------
# (Its checkpoints are named after a tag kept in it: derived from the path, moving it broke
# the chain and left its checkpoints on the domain for good.)
mv "$REPO" "$W/moved"
REPO=$W/moved
backup_ok b13 inc "incremental after the repository moved"
vs_assert_eq "$(field "$W/b13.json" base)" "$(jq -r .id "$W/b12.json")" "its base"
vs_assert_eq "$(checkpoints)" "$(cps "$(field "$W/b9r.json" checkpoint)" "$(field "$W/b13.json" checkpoint)" \
  "$(field "$W/r2.json" checkpoint)" "$(field "$W/rel.json" checkpoint)")" \
  "the moved repository pruned its own older checkpoints, and only those"

vs_virtsnap verify --repo "$REPO"
vs_log "backup-incremental: all checks passed"
