#!/bin/bash
# restore-as.sh -- restoring elsewhere never touches the original. A running guest (with a
# network interface) is backed up; `restore --as NEW --define --start` makes a second
# domain beside it while it runs: new UUID, new MAC address, its own console log, its disk
# a new file NEW-vda.qcow2; both guests run and answer at once, and the original's disk
# (checksummed while it is paused, before and after) and definition are unchanged. Then
# into a libvirt dir pool (volume created through the storage API, --format raw, sparse,
# the domain's disk a pool volume; it boots), and into --target-dir without --define (the
# disk and NAME.xml are written, and the printed virsh command defines it).
set -euo pipefail
. "$VS_SOURCE_ROOT/tests/lib/harness.sh"

vs_test_open --libvirt ra
N=vst-ra-$$-copy
N2=vst-ra-$$-pool
N3=vst-ra-$$-dir
P=vst-ra-$$-pool
IFACE="<interface type='user'><mac address='52:54:00:5a:$(printf '%02x:%02x' $(( $$ % 256 )) $(( ($$ / 256) % 256 )))'/><model type='virtio'/></interface>"

vs_guest_disk "$W/disk.qcow2" >/dev/null
vs_guest_start "$D" "$W/disk.qcow2" "$IFACE"
mac_d=$(virsh domiflist "$D" | awk 'NR > 2 && $5 != "" {print $5}')
uuid_d=$(virsh domuuid "$D" | sed -n 1p)
vs_log "original: uuid $uuid_d, mac $mac_d"
[ -n "$mac_d" ] || vs_fail "the original has no MAC address"
vs_virtsnap backup --repo "$REPO" --init --state-dir "$STATE" --json "$D" > "$W/b.json"
ID=$(jq -r .id "$W/b.json")
[ "$ID" != null ] || vs_fail "backup failed"
vs_virtsnap export --repo "$REPO" "$ID" "$D" vda "$W/export.qcow2"
virsh dumpxml --inactive "$D" > "$W/d-before.xml"

# --- --as NEW beside the running original --------------------------------------------------
# The original is paused while its disk is checksummed and restored beside: paused, QEMU
# writes nothing, so the checksum can only change if the restore wrote the original disk.
virsh suspend "$D" >/dev/null
sum_before=$(md5sum < "$W/disk.qcow2")
vs_domain_track "$N"
t0=$(date +%s%N)
vs_virtsnap restore --repo "$REPO" --state-dir "$STATE" --as "$N" --start --json "$D" > "$W/r1.json"
vs_log "restore --as took $(( ($(date +%s%N) - t0) / 1000000 )) ms"
sum_after=$(md5sum < "$W/disk.qcow2")
virsh resume "$D" >/dev/null
cat "$W/r1.json" >&2
vs_assert_eq "$sum_after" "$sum_before" "original disk checksum before and after the restore"
vs_assert_eq "$(jq -r '.domains[0] | [.name, .restored_as, .ok, .in_place, .defined, .started] | map(tostring) | join(",")' "$W/r1.json")" \
  "$D,$N,true,false,true,true" "restore --as result"
vs_assert_eq "$(jq -r '.domains[0].disks[0] | [.path, .format, .action] | join(",")' "$W/r1.json")" \
  "$W/$N-vda.qcow2,qcow2,created" "new disk file beside the original"
vs_assert_eq "$(virsh domblklist "$N" --details | awk '$3 == "vda" {print $4}')" "$W/$N-vda.qcow2" "new domain's disk"
uuid_n=$(virsh domuuid "$N" | sed -n 1p)
mac_n=$(virsh domiflist "$N" | awk 'NR > 2 && $5 != "" {print $5}')
vs_log "copy: uuid $uuid_n, mac $mac_n"
[ "$uuid_n" != "$uuid_d" ] || vs_fail "the copy has the original's UUID"
[ -n "$mac_n" ] && [ "$mac_n" != "$mac_d" ] || vs_fail "the copy's MAC '$mac_n' is not a new one (original $mac_d)"
log_n=$(virsh dumpxml "$N" | sed -n "s|.*<source path='\([^']*console[^']*\)'.*|\1|p" | sort -u)
vs_assert_eq "$log_n" "$W/$N.console.log" "the copy's console log"
vs_wait_agent "$N" 120
vs_wait_agent "$D" 30
vs_assert_eq "$(virsh domstate "$D" | sed -n 1p),$(virsh domstate "$N" | sed -n 1p)" "running,running" "both run"
grep -q GA-GUEST-READY "$W/$N.console.log" || vs_fail "the copy's console log has no GA-GUEST-READY"
vs_assert_eq "$(grep -c GA-GUEST-READY "$(vs_console_log "$D")")" 1 "the original's console log was not taken over"
virsh dumpxml --inactive "$D" > "$W/d-after.xml"
diff "$W/d-before.xml" "$W/d-after.xml" >&2 || vs_fail "the original's definition changed"
vs_assert_eq "$(virsh domblklist "$D" --details | awk '$3 == "vda" {print $4}')" "$W/disk.qcow2" "original's disk"
virsh destroy "$N" >/dev/null

# --- into a dir pool, raw --------------------------------------------------------------------
cat > "$W/pool.xml" <<EOF
<pool type='dir'><name>$P</name><target><path>$W/pool</path></target></pool>
EOF
vs_define_pool "$W/pool.xml" >/dev/null
vs_domain_track "$N2"
vs_virtsnap restore --repo "$REPO" --state-dir "$STATE" --as "$N2" --pool "$P" --format raw \
  --define --json "$D" > "$W/r2.json"
cat "$W/r2.json" >&2
vs_assert_eq "$(jq -r '.domains[0].disks[0] | [.pool, .volume, .format, .path] | join(",")' "$W/r2.json")" \
  "$P,$N2-vda.raw,raw,$W/pool/$N2-vda.raw" "pool volume"
virsh pool-refresh "$P" >/dev/null
# Captured first: virsh writes its last newline separately, and with pipefail a grep -q
# that has already matched and exited would fail the pipeline on virsh's SIGPIPE.
vols=$(virsh vol-list "$P")
grep -q " $N2-vda.raw " <<< "$vols" || vs_fail "volume not listed in pool $P"
vs_assert_eq "$(virsh vol-dumpxml --pool "$P" "$N2-vda.raw" | sed -n "s/.*<format type='\([a-z0-9]*\)'.*/\1/p")" raw "volume format"
vs_assert_eq "$(virsh dumpxml "$N2" | grep -c "<source pool='$P' volume='$N2-vda.raw'")" 1 "the domain's disk is the pool volume"
qemu-img compare -q -f qcow2 -F raw "$W/export.qcow2" "$W/pool/$N2-vda.raw" || vs_fail "pool volume differs from the backup"
alloc=$(( $(stat -c %b "$W/pool/$N2-vda.raw") * 512 )); size=$(stat -c %s "$W/pool/$N2-vda.raw")
vs_log "pool volume: $alloc of $size bytes allocated"
[ "$alloc" -lt $((size / 4)) ] || vs_fail "pool volume is not sparse ($alloc of $size)"
virsh start "$N2" >/dev/null
vs_wait_agent "$N2" 120
virsh destroy "$N2" >/dev/null

# --- --target-dir, no --define: files and the virsh command ------------------------------------
mkdir -p "$W/elsewhere"
vs_virtsnap restore --repo "$REPO" --state-dir "$STATE" --as "$N3" --target-dir "$W/elsewhere" --json "$D" > "$W/r3.json"
cat "$W/r3.json" >&2
vs_assert_eq "$(jq -r '.domains[0] | [.defined, .xml] | map(tostring) | join(",")' "$W/r3.json")" \
  "false,$W/elsewhere/$N3.xml" "target-dir result"
qemu-img compare -q "$W/export.qcow2" "$W/elsewhere/$N3-vda.qcow2" || vs_fail "target-dir disk differs from the backup"
virsh domstate "$N3" >/dev/null 2>&1 && vs_fail "$N3 was defined without --define"
vs_domain_track "$N3"
cmd=$(jq -r '.domains[0].define_command' "$W/r3.json")
vs_log "running: $cmd"
eval "$cmd" >/dev/null
vs_assert_eq "$(virsh domblklist "$N3" --details | awk '$3 == "vda" {print $4}')" "$W/elsewhere/$N3-vda.qcow2" "defined from NAME.xml"
grep -q "<uuid>" "$W/elsewhere/$N3.xml" && vs_fail "NAME.xml of a copy keeps a UUID"
vs_assert_eq "$(virsh domstate "$D" | sed -n 1p)" running "original still running"
vs_log "restore-as: all checks passed"
