#!/bin/bash
# restore-instant.sh -- `virtsnap restore --instant`: the domain runs at once from its
# backup, served over NBD by nbdkit, and its disk is copied into place underneath.
# A running guest with ~64 MiB of data written (and its record writer going) is backed
# up, destroyed, undefined and its disk deleted. `restore --instant` defines and starts it
# on a qcow2 overlay (at the disk's own path) whose backing file is the export; the time
# until the guest agent answers is measured (and compared with an export of the same
# disk, the write phase of a full restore) and must be under 60 s. While the block pull
# runs (slowed down with virsh blockjob --bandwidth so that it is seen running),
# `virtsnap umount` refuses to stop the export under the guest. When the copy is done:
# `virsh domblklist` shows the final path, the live and persistent definitions name no
# NBD source, `qemu-img info` shows no backing file, nbdkit and its socket are gone, the
# guest's data and record log are those of the backup, the disk passes verify-backup.sh,
# and the domain boots again with the repository moved away. Then a guest destroyed
# during its copy: the copy is finished offline (qemu-img rebase) and the image is a
# standalone, crash-consistent disk. A missing chunk is refused before anything is touched.
# Last, two restores killed (kill -9 at a fault point) once their guests run on the
# exports: the exports outlive them, and `virtsnap recover` finishes the copy of the one
# still running (block pull) and of the one stopped meanwhile (offline), then stops both.
# And --format raw: the guest starts on an overlay beside its raw image and a block copy moves
# it there and pivots (live and persistent definition raw, no overlay left); killed before
# the copy, recover does it.
set -euo pipefail
. "$VS_SOURCE_ROOT/tests/lib/harness.sh"

vs_test_open --libvirt ri
command -v nbdkit >/dev/null || vs_skip "nbdkit not installed (scripts/deps.sh)"
export VIRTSNAP_RUN_DIR=$W/run
# registered first, so it runs last: after the domains are gone
vs_on_exit "$VIRTSNAP" umount --all --force
ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
lastseq() { vs_gexec "$D" 'tail -n 1 /data/records.log' | awk '{print $1}'; }
nbdkits() { pgrep -f "nbdkit.*log=$VIRTSNAP_RUN_DIR/" || true; }

vs_guest_disk "$W/disk.qcow2" >/dev/null
vs_guest_start "$D" "$W/disk.qcow2"
uuid=$(virsh domuuid "$D" | sed -n 1p)
vs_gexec "$D" 'dd if=/dev/urandom of=/data/big bs=1M count=64 2>/dev/null && sync' >/dev/null
sum=$(vs_gexec "$D" 'md5sum /data/big' | awk '{print $1}')
vs_log "64 MiB written in the guest: md5 $sum"

# the restored boot shows as the uptime dropping: back up a guest up longer than a boot
vs_guest_uptime_at_least "$D" 20
vs_virtsnap backup --repo "$REPO" --init --state-dir "$STATE" --json "$D" > "$W/b.json"
ID=$(jq -r .id "$W/b.json")
[ "$ID" != null ] || vs_fail "backup failed: $(cat "$W/b.json")"
seq_backup=$(lastseq)
t0=$(date +%s%N)
vs_virtsnap export --repo "$REPO" "$ID" "$D" vda "$W/export.qcow2" >/dev/null
export_ms=$(ms "$t0")
vs_log "backup $ID; exporting its disk (a full restore's write phase) took $export_ms ms"
sleep 2
seq_final=$(lastseq)

# --- the domain is gone: definition, disk and all ------------------------------------------
virsh destroy "$D" >/dev/null
virsh undefine "$D" >/dev/null
rm -f "$W/disk.qcow2"

# --- a missing chunk: refused, nothing touched -----------------------------------------------
cp -a "$REPO" "$W/bad-repo"
digest=$(jq -r --arg d "$D" '.domains[] | select(.name == $d) | .disks[0].chunks[0][2]' "$REPO/backups/$ID.json")
rm "$W/bad-repo/chunks/${digest:0:2}/$digest"
set +e; "$VIRTSNAP" restore --repo "$W/bad-repo" --state-dir "$STATE" --instant "$D" > "$W/bad.out" 2>&1; rc=$?; set -e
vs_assert_eq "$rc" 1 "instant restore with a missing chunk"
vs_assert_contains "$(cat "$W/bad.out")" "needs chunk $digest, which is missing" "the missing chunk named"
virsh domstate "$D" >/dev/null 2>&1 && vs_fail "$D defined by a refused restore"
[ ! -e "$W/disk.qcow2" ] || vs_fail "disk written by a refused restore"
vs_assert_eq "$(ls "$VIRTSNAP_RUN_DIR/mounts" 2>/dev/null | wc -l)" 0 "no mount left by the refusal"

# --- restore --instant ------------------------------------------------------------------------
vs_domain_track "$D"
rm -f "$(vs_console_log "$D")"
t0=$(date +%s%N)
vs_log "virtsnap restore --instant $D"
"$VIRTSNAP" restore --repo "$REPO" --state-dir "$STATE" --instant --json "$D" > "$W/r.json" 2> "$W/r.err" &
rpid=$!
until grep -qs "running from backup" "$W/r.err"; do
  vs_alive "$rpid" || vs_fail "restore ended before the domain ran: $(cat "$W/r.err")"
  [ "$(ms "$t0")" -lt 60000 ] || vs_fail "domain not running after 60 s: $(cat "$W/r.err")"
  sleep 0.05
done
running_ms=$(ms "$t0")
# slow the copy down, so that it is seen running (it may be over already)
throttled=0
virsh blockjob "$D" vda --bandwidth 2 >/dev/null 2>&1 && throttled=1
on_nbd=$(virsh dumpxml "$D" | grep -c "protocol='nbd'" || true)
vs_log "domain running after $running_ms ms (copy throttled: $throttled, NBD in the live XML: $on_nbd)"
vs_wait_agent "$D" 60
agent_ms=$(ms "$t0")
vs_log "agent answers $agent_ms ms after the restore began (export alone: $export_ms ms; boot: the test guest's usual 4-7 s)"
[ "$agent_ms" -lt 60000 ] || vs_fail "the agent answered only after $agent_ms ms"
vs_assert_eq "$(virsh domblklist "$D" --details | awk '$3 == "vda" {print $4}')" "$W/disk.qcow2" "disk path while copying"

# the pull drops the NBD backing from the live XML when it completes
if [ "$throttled" = 1 ] && [ "$(virsh dumpxml "$D" | grep -c "protocol='nbd'" || true)" = 1 ]; then
  vs_assert_eq "$("$VIRTSNAP" mount --list --json | jq -r '.[0].domain')" "$D" "the export is listed"
  set +e; "$VIRTSNAP" umount --all > "$W/u.out" 2>&1; rc=$?; set -e
  vs_assert_eq "$rc" 1 "umount under a running guest"
  vs_assert_contains "$(cat "$W/u.out")" "domain '$D' is running on" "why not"
  vs_assert_eq "$("$VIRTSNAP" mount --list --json | jq -r '.[0].alive')" true "export still up"
  vs_log "block job: $(virsh blockjob "$D" vda --info 2>&1 | tr '\r\n' '  ')"
  virsh blockjob "$D" vda --bandwidth 0 >/dev/null
else
  vs_log "the copy was over before it could be slowed down: skipping the umount refusal check"
fi

wait "$rpid" || { cat "$W/r.err" >&2; cat "$W/r.json" >&2; vs_fail "restore --instant failed"; }
total_ms=$(ms "$t0")
cat "$W/r.err" >&2
cat "$W/r.json" >&2
vs_assert_eq "$(jq -r '.domains[0] | [.name, .backup, .ok, .in_place, .defined, .started, .instant] | map(tostring) | join(",")' "$W/r.json")" \
  "$D,$ID,true,true,true,true,true" "restore result"
vs_assert_eq "$(jq -r '.domains[0].disks[0] | [.target, .path, .format, (.nbd | tostring)] | join(",")' "$W/r.json")" \
  "vda,$W/disk.qcow2,qcow2,null" "restored disk"
copied_ms=$(jq -r '.domains[0].copied_after_ms' "$W/r.json")
vs_log "TIMES: running after $(jq -r '.domains[0].running_after_ms' "$W/r.json") ms, agent after $agent_ms ms, copied after $copied_ms ms, restore command $total_ms ms; export alone $export_ms ms"

# --- no dependency on the repository any more --------------------------------------------------
vs_assert_eq "$(virsh domblklist "$D" --details | awk '$3 == "vda" {print $4}')" "$W/disk.qcow2" "final disk path"
vs_assert_eq "$(virsh dumpxml "$D" | grep -c "nbd" || true)" 0 "NBD in the live XML"
vs_assert_eq "$(virsh dumpxml --inactive "$D" | grep -c "nbd\|backingStore type" || true)" 0 "NBD or a backing chain in the definition"
vs_assert_eq "$(qemu-img info -U --output=json "$W/disk.qcow2" | jq -r '.["backing-filename"] // "none"')" none "backing file of the final image"
vs_assert_eq "$(nbdkits | wc -l)" 0 "nbdkit processes left"
vs_assert_eq "$(ls "$VIRTSNAP_RUN_DIR/mounts" | wc -l)" 0 "files left in the run directory"
vs_assert_eq "$(virsh domuuid "$D" | sed -n 1p)" "$uuid" "UUID kept"

# --- the data is the backup's ----------------------------------------------------------------
vs_assert_eq "$(vs_gexec "$D" 'md5sum /data/big' | awk '{print $1}')" "$sum" "64 MiB file in the restored guest"
boundary=
for _ in $(seq 60); do
  boundary=$(vs_gexec "$D" "awk '{ if (p != \"\" && \$2 + 0 < p + 0) { print s; exit } p = \$2; s = \$1 }' /data/records.log")
  [ -z "$boundary" ] || break
  sleep 0.5
done
vs_log "records: last before the restored boot $boundary (backup-time $seq_backup, final $seq_final)"
[ -n "$boundary" ] || vs_fail "no boot boundary found in the restored records.log"
[ "$boundary" -le $((seq_backup + 5)) ] || vs_fail "restored log goes past the backup ($boundary > $seq_backup + 5)"
[ "$boundary" -lt "$seq_final" ] || vs_fail "restored log is not older than the original"
virsh shutdown "$D" --mode agent >/dev/null
vs_wait_shutoff "$D" 60
"$VS_GUEST_SRC/verify-backup.sh" "$W/disk.qcow2" || vs_fail "restored disk is not consistent"

mv "$REPO" "$REPO.away"
rm -f "$(vs_console_log "$D")"
virsh start "$D" >/dev/null
vs_wait_agent "$D" 120
vs_assert_eq "$(vs_gexec "$D" 'md5sum /data/big' | awk '{print $1}')" "$sum" "data after a restart without the repository"
virsh destroy "$D" >/dev/null
mv "$REPO.away" "$REPO"

# --- the guest stops during its copy: finished offline ---------------------------------------
D2=vst-ri-$$-2
vs_domain_track "$D2"
"$VIRTSNAP" restore --repo "$REPO" --state-dir "$STATE" --instant --as "$D2" --json "$D" > "$W/r2.json" 2> "$W/r2.err" &
rpid=$!
until grep -qs "running from backup" "$W/r2.err"; do
  vs_alive "$rpid" || vs_fail "restore --as ended before the domain ran: $(cat "$W/r2.err")"
  sleep 0.05
done
if virsh blockjob "$D2" vda --bandwidth 1 >/dev/null 2>&1; then
  virsh destroy "$D2" >/dev/null
  vs_log "$D2 destroyed during its copy"
  wait "$rpid" || { cat "$W/r2.err" >&2; vs_fail "restore --instant of a guest stopped during the copy failed"; }
  cat "$W/r2.json" >&2
  vs_assert_contains "$(jq -r '.domains[0].notes | join(" ")' "$W/r2.json")" "copied into $W/$D2-vda.qcow2 offline" "offline copy note"
else
  wait "$rpid" || vs_fail "restore --as failed"
  vs_log "the copy of $D2 was over before it could be slowed down: offline path not exercised"
fi
vs_assert_eq "$(jq -r '.domains[0] | [.ok, (.disks[0].nbd | tostring)] | map(tostring) | join(",")' "$W/r2.json")" "true,null" "restore --as result"
vs_assert_eq "$(qemu-img info -U --output=json "$W/$D2-vda.qcow2" | jq -r '.["backing-filename"] // "none"')" none "backing file of $D2's image"
virsh destroy "$D2" >/dev/null 2>&1 || true
# the guest ran (and wrote) for a moment, then was pulled from under: a crash-consistent disk
"$VS_GUEST_SRC/verify-backup.sh" "$W/$D2-vda.qcow2" --crash-consistent || vs_fail "$D2's disk is not consistent"
vs_assert_eq "$(nbdkits | wc -l)" 0 "nbdkit processes left"

# --- virtsnap killed while the guests run on their exports: recover finishes the copies ------
# D3 keeps running (recover pulls its disk while it runs); D4 is stopped before recover
# (recover copies its disk offline). Both were killed after the start, before any copy.
for n in 3 4; do
  vs_domain_track "$D-$n"
  set +e
  VIRTSNAP_FAULT=instant-running "$VIRTSNAP" restore --repo "$REPO" --state-dir "$STATE" --instant \
    --as "$D-$n" "$D" > "$W/r$n.out" 2>&1; rc=$?
  set -e
  vs_assert_eq "$rc" 137 "restore --instant of $D-$n killed at instant-running"
  vs_assert_eq "$(virsh domstate "$D-$n" | sed -n 1p)" running "$D-$n runs after the kill"
  vs_assert_eq "$(qemu-img info -U --output=json "$W/$D-$n-vda.qcow2" | jq -r '.["backing-filename"] | startswith("nbd+unix")')" \
    true "$D-$n still reads its export"
done
vs_assert_eq "$(nbdkits | wc -l)" 2 "the exports outlive the killed restores"
virsh destroy "$D-4" >/dev/null
vs_wait_agent "$D-3" 60
vs_assert_eq "$(vs_gexec "$D-3" 'md5sum /data/big' | awk '{print $1}')" "$sum" "data read through the export after the kill"
"$VIRTSNAP" recover --state-dir "$STATE" > "$W/rec.out" 2>&1 || { cat "$W/rec.out" >&2; vs_fail "recover after killed instant restores failed"; }
cat "$W/rec.out" >&2
vs_assert_contains "$(cat "$W/rec.out")" "finished the copy of domain '$D-3' disk vda" "recover pulled the running guest's disk"
vs_assert_contains "$(cat "$W/rec.out")" "into $W/$D-4-vda.qcow2 offline" "recover copied the stopped guest's disk"
for n in 3 4; do
  vs_assert_eq "$(qemu-img info -U --output=json "$W/$D-$n-vda.qcow2" | jq -r '.["backing-filename"] // "none"')" none "backing file of $D-$n's image after recover"
done
vs_assert_eq "$(virsh dumpxml "$D-3" | grep -c "nbd" || true)" 0 "NBD in $D-3's live XML after recover"
vs_assert_eq "$(nbdkits | wc -l)" 0 "nbdkit processes left after recover"
vs_assert_eq "$(ls "$VIRTSNAP_RUN_DIR/mounts" | wc -l)" 0 "files left in the run directory after recover"
vs_assert_eq "$(vs_gexec "$D-3" 'md5sum /data/big' | awk '{print $1}')" "$sum" "data of $D-3 after recover"
virsh destroy "$D-3" >/dev/null
"$VS_GUEST_SRC/verify-backup.sh" "$W/$D-3-vda.qcow2" --crash-consistent || vs_fail "$D-3's disk is not consistent"
"$VS_GUEST_SRC/verify-backup.sh" "$W/$D-4-vda.qcow2" --crash-consistent || vs_fail "$D-4's disk is not consistent"

# --- a raw disk: the guest starts on an overlay beside it, a block copy moves it onto the raw
# image and pivots. Then the same killed at instant-running: recover does the copy.
for n in 5 6; do
  vs_domain_track "$D-$n"
  set +e
  if [ "$n" = 6 ]; then
    VIRTSNAP_FAULT=instant-running "$VIRTSNAP" restore --repo "$REPO" --state-dir "$STATE" --instant \
      --format raw --as "$D-$n" --json "$D" > "$W/r$n.json" 2> "$W/r$n.err"; rc=$?
    vs_assert_eq "$rc" 137 "raw instant restore of $D-$n killed at instant-running"
    "$VIRTSNAP" recover --state-dir "$STATE" > "$W/rec$n.out" 2>&1; rc=$?
    cat "$W/rec$n.out" >&2
    vs_assert_eq "$rc" 0 "recover after the killed raw instant restore"
    vs_assert_contains "$(cat "$W/rec$n.out")" "finished the copy of domain '$D-$n' disk vda" "recover copied it"
  else
    "$VIRTSNAP" restore --repo "$REPO" --state-dir "$STATE" --instant --format raw --as "$D-$n" \
      --json "$D" > "$W/r$n.json" 2> "$W/r$n.err"; rc=$?
    cat "$W/r$n.err" "$W/r$n.json" >&2
    vs_assert_eq "$rc" 0 "raw instant restore of $D-$n"
  fi
  set -e
  img=$W/$D-$n-vda.raw
  vs_assert_eq "$(virsh domblklist "$D-$n" --details | awk '$3 == "vda" {print $4}')" "$img" "$D-$n runs on its raw image"
  vs_assert_eq "$(qemu-img info -U --output=json "$img" | jq -r '[.format, (.["backing-filename"] // "none")] | join(",")')" \
    "raw,none" "$D-$n's image"
  vs_assert_eq "$(virsh dumpxml "$D-$n" | grep -c "nbd\|virtsnap-restore" || true)" 0 "$D-$n's live XML names no export or overlay"
  vs_assert_eq "$(virsh dumpxml --inactive "$D-$n" | xmllint --xpath 'string(//disk[target/@dev="vda"]/driver/@type)' -)" raw "$D-$n's definition: raw"
  vs_assert_eq "$(ls -a "$W" | grep -c "$D-$n.*virtsnap-restore" || true)" 0 "$D-$n's overlay removed"
  vs_wait_agent "$D-$n" 60
  vs_assert_eq "$(vs_gexec "$D-$n" 'md5sum /data/big' | awk '{print $1}')" "$sum" "data of $D-$n"
  virsh destroy "$D-$n" >/dev/null
done
vs_assert_eq "$(nbdkits | wc -l)" 0 "nbdkit processes left after the raw restores"
vs_log "restore-instant: all checks passed"
