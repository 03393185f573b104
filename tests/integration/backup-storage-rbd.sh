#!/bin/bash
# backup-storage-rbd.sh -- `backup --storage-snapshot` on Ceph RBD (issue 15): one real
# single-node Ceph (tests/targets/ceph-target.sh, memstore) and one running guest whose data
# disk vda is a libvirt network disk protocol='rbd' (cephx: a libvirt secret of usage type
# ceph; the key only ever in files and libvirt, never in argv or logs) and, when libvirtd has
# the rbd pool driver (libvirt-daemon-driver-storage-rbd), a second disk vdb that is a volume
# made in a libvirt rbd pool (vol-create-as), attached as the network disk libvirt requires
# (libvirt 9.0's QEMU driver refuses type='volume' disks of rbd pools: "isn't yet
# supported"; virt-install and OpenStack attach pool volumes this way). `auto` picks rbd; the copy reads the RBD snapshot and is a quiesced
# copy; the snapshot is deleted after it; --no-copy keeps it and records it (in_repo false,
# provider rbd, rbd_pool/rbd_image). Faults: Ceph's monitor hung (SIGSTOPped: memstore
# would lose every byte if stopped; see (c) below for why the OSD is not) just before the
# snapshot: the domain fails in bounded time naming the disk and Ceph, nothing is lost, the
# guest is back on its disk, recover is clean, no snapshot left; kill -9 right after the snapshot, then recover: the
# snapshot deleted, the guest on its disk. Each time: no overlay, no journal left. Then the
# next backup works and is consistent.
set -euo pipefail
. "$VS_SOURCE_ROOT/tests/lib/harness.sh"

vs_test_open --libvirt bsr
for b in ceph-mon ceph-osd rbd qemu-img xmllint; do
  command -v $b >/dev/null || vs_skip "$b missing (scripts/deps.sh --test)"
done
[ -e /usr/lib/x86_64-linux-gnu/qemu/block-rbd.so ] || ls /usr/lib/*/qemu/block-rbd.so >/dev/null 2>&1 ||
  vs_skip "QEMU has no rbd block driver (qemu-block-extra)"
"$VS_BUILD_ROOT/tests/block/snapshot/snapio" --rbd exists x 2>&1 | grep -q "built without librbd" &&
  vs_skip "virtsnap built without librbd (librbd-dev)"
HAVE_POOL=1
vs_rbd_pool_ok || HAVE_POOL=0
export VIRTSNAP_NET_TIMEOUT_SECS=5      # the hung cluster below: an error in bounded time

# --- Ceph ------------------------------------------------------------------------------------
CD=$W/ceph
vs_on_exit "$VS_TARGETS_SRC/ceph-target.sh" stop "$CD"
t0=$(date +%s)
CEPH_RGW=0 CEPH_OSD_BYTES=$((2 << 30)) "$VS_TARGETS_SRC/ceph-target.sh" start "$CD" >&2 ||
  vs_fail "ceph-target.sh start failed (logs in $CD/log)"
vs_log "Ceph up in $(( $(date +%s) - t0 )) s"
. "$CD/ceph.env"
export CEPH_CONF      # virtsnap's librbd (rbd_conf NULL: Ceph's default, which honours $CEPH_CONF)
R="rbd -c $CEPH_CONF --pool $CEPH_POOL"
IMG=vst-bsr-vda-$$
VOL=vst-bsr-vdb-$$
P=vst-bsr-$$
[ -n "${VS_GUEST_DIR:-}" ] || vs_guest_prepare || vs_fail "cannot build the test guest"
qemu-img convert -O raw "$VS_GUEST_DIR/data.qcow2" "rbd:$CEPH_POOL/$IMG:conf=$CEPH_CONF" ||
  vs_fail "cannot import the guest disk into rbd"
head -c 32M /dev/urandom > "$W/vdb.raw"

# The client key as a libvirt secret: written to a 0600 file, read by virsh from there.
SUUID=$(cat /proc/sys/kernel/random/uuid)
cat > "$W/secret.xml" <<EOF
<secret ephemeral='no' private='yes'><uuid>$SUUID</uuid>
  <usage type='ceph'><name>$P client.$CEPH_CLIENT</name></usage></secret>
EOF
virsh secret-define "$W/secret.xml" >/dev/null
vs_on_exit virsh secret-undefine "$SUUID"
( umask 077; printf '%s' "$CEPH_KEY" > "$W/key.b64" )
virsh secret-set-value "$SUUID" --file "$W/key.b64" >/dev/null
rm -f "$W/key.b64"
HOST="<host name='127.0.0.1' port='${CEPH_MON##*:}'/>"
AUTH="<auth username='$CEPH_CLIENT'><secret type='ceph' uuid='$SUUID'/></auth>"

EXTRA=""
if [ "$HAVE_POOL" = 1 ]; then
  cat > "$W/pool.xml" <<EOF
<pool type='rbd'><name>$P-rbd</name>
  <source><name>$CEPH_POOL</name>$HOST
    <auth type='ceph' username='$CEPH_CLIENT'><secret uuid='$SUUID'/></auth></source></pool>
EOF
  vs_define_pool "$W/pool.xml" >/dev/null
  virsh vol-create-as "$P-rbd" "$VOL" 32M --format raw >/dev/null
  qemu-img convert -n -f raw -O raw "$W/vdb.raw" "rbd:$CEPH_POOL/$VOL:conf=$CEPH_CONF"
  vs_assert_eq "$(virsh vol-list "$P-rbd" | awk -v v="$VOL" '$1 == v {print $1}')" "$VOL" "vdb a volume of the rbd pool"
  EXTRA="<disk type='network' device='disk'><driver name='qemu' type='raw'/>$AUTH
  <source protocol='rbd' name='$CEPH_POOL/$VOL'>$HOST</source><target dev='vdb' bus='virtio'/></disk>"
else
  vs_log "SKIP (part b): libvirtd has no rbd storage pool driver: install libvirt-daemon-driver-storage-rbd (scripts/deps.sh --test) and restart libvirtd; the rbd pool volume is not tested"
fi

VS_VDA_XML="<disk type='network' device='disk'><driver name='qemu' type='raw'/>$AUTH
  <source protocol='rbd' name='$CEPH_POOL/$IMG'>$HOST</source><target dev='vda' bus='virtio'/></disk>" \
  vs_guest_start "$D" "$W/unused.img" "$EXTRA"
virsh dumpxml "$D" > "$W/domain-before.xml"

dom_xpath() { virsh dumpxml "$D" | xmllint --xpath "$1" -; }
snaps_of() { $R snap ls "$1" --format json | jq -r '[.[].name] | sort | join(" ")'; }
snaps() { echo "$(snaps_of "$IMG")|$( [ "$HAVE_POOL" = 1 ] && snaps_of "$VOL" )"; }
# back_on_disk WHAT: the guest runs on its own rbd disks, no overlay, no journal left
back_on_disk() {
  vs_assert_eq "$(virsh domstate "$D" | head -1)" running "$1: domain state"
  vs_assert_eq "$(dom_xpath "concat(//disk[target/@dev='vda']/@type, ':', //disk[target/@dev='vda']/source/@protocol, ':', //disk[target/@dev='vda']/source/@name)")" \
    "network:rbd:$CEPH_POOL/$IMG" "$1: vda"
  if [ "$HAVE_POOL" = 1 ]; then
    vs_assert_eq "$(dom_xpath "string(//disk[target/@dev='vdb']/source/@name)")" "$CEPH_POOL/$VOL" "$1: vdb the pool's volume"
  fi
  vs_assert_eq "$(dom_xpath 'count(//disk/backingStore/source)')" 0 "$1: overlays in the live XML"
  vs_assert_eq "$(ls "$STATE/overlays" 2>/dev/null | wc -l)" 0 "$1: overlay files"
  vs_assert_eq "$(ls "$STATE/journal" 2>/dev/null | wc -l)" 0 "$1: journals left"
  vs_gexec "$D" 'echo alive > /data/alive && sync' >/dev/null || vs_fail "$1: the guest cannot write its disk"
}
NO_SNAPS="|"

# --- (a, b) copy from the RBD snapshot, auto ---------------------------------------------------
vs_gexec "$D" 'dd if=/dev/urandom of=/data/bulk bs=1M count=8 conv=fsync 2>/dev/null' >/dev/null
vs_virtsnap backup --repo "$REPO" --init --state-dir "$STATE" --storage-snapshot --json "$D" > "$W/s1.json" ||
  { cat "$W/s1.json" >&2; vs_fail "the storage backup failed"; }
cat "$W/s1.json" >&2
ID1=$(jq -r .id "$W/s1.json")
vs_assert_eq "$(jq -r '.domains[0] | [.ok, .consistency, .mode] | map(tostring) | join(",")' "$W/s1.json")" \
  "true,quiesced,storage-snapshot" "storage backup result"
want="vda:snapshot:rbd:false:virtsnap-$ID1-vda"
[ "$HAVE_POOL" = 1 ] && want="$want vdb:snapshot:rbd:false:virtsnap-$ID1-vdb"
vs_assert_eq "$(jq -r '[.domains[0].disks[] | [.target, .data_path, .snapshot.provider, .snapshot.kept, .snapshot.handle] | map(tostring) | join(":")] | join(" ")' "$W/s1.json")" \
  "$want" "auto picked rbd for each disk, read from the snapshot, not kept"
back_on_disk "after the storage backup"
vs_assert_eq "$(snaps)" "$NO_SNAPS" "rbd snapshots left after a copy"
vs_virtsnap verify --repo "$REPO" "$ID1"
vs_virtsnap export --repo "$REPO" "$ID1" "$D" vda "$W/e1.qcow2"
"$VS_GUEST_SRC/verify-backup.sh" "$W/e1.qcow2" || vs_fail "the copy read from the RBD snapshot is not consistent"
if [ "$HAVE_POOL" = 1 ]; then
  vs_virtsnap export --repo "$REPO" "$ID1" "$D" vdb "$W/e1b.raw" --format raw
  cmp "$W/e1b.raw" "$W/vdb.raw" || vs_fail "vdb (rbd pool volume) differs from what was imported"
fi

# --- --no-copy: the RBD snapshot is the backup ---------------------------------------------------
vs_virtsnap backup --repo "$REPO" --state-dir "$STATE" --storage-snapshot --no-copy --json "$D" > "$W/s2.json" ||
  { cat "$W/s2.json" >&2; vs_fail "the --no-copy backup failed"; }
cat "$W/s2.json" >&2
ID2=$(jq -r .id "$W/s2.json")
vs_assert_eq "$(jq -r '.domains[0].disks[0] | [.snapshot.provider, .snapshot.kept, .bytes_read] | map(tostring) | join(",")' "$W/s2.json")" \
  "rbd,true,0" "--no-copy: kept, nothing read"
back_on_disk "after --no-copy"
want="virtsnap-$ID2-vda|"
[ "$HAVE_POOL" = 1 ] && want="${want}virtsnap-$ID2-vdb"
vs_assert_eq "$(snaps)" "$want" "the --no-copy snapshots"
vs_assert_eq "$(jq -r '.domains[0].disks[] | select(.target == "vda") | [.in_repo, .snapshot.provider, .snapshot.handle, .snapshot.rbd_pool, .snapshot.rbd_image, .chunks == []] | map(tostring) | join(",")' "$REPO/backups/$ID2.json")" \
  "false,rbd,virtsnap-$ID2-vda,$CEPH_POOL,$IMG,true" "the manifest records vda's rbd snapshot, no data"
"$VS_GUEST_SRC/verify-backup.sh" "rbd:$CEPH_POOL/$IMG@virtsnap-$ID2-vda:conf=$CEPH_CONF" ||
  vs_fail "the --no-copy RBD snapshot is not consistent"
if [ "$HAVE_POOL" = 1 ]; then
  vs_assert_eq "$(jq -r '.domains[0].disks[] | select(.target == "vdb") | [.in_repo, .snapshot.provider, .snapshot.rbd_pool, .snapshot.rbd_image] | map(tostring) | join(",")' "$REPO/backups/$ID2.json")" \
    "false,rbd,$CEPH_POOL,$VOL" "the manifest records vdb's rbd snapshot"
  qemu-img convert -O raw "rbd:$CEPH_POOL/$VOL@virtsnap-$ID2-vdb:conf=$CEPH_CONF" "$W/s2b.raw"
  cmp "$W/s2b.raw" "$W/vdb.raw" || vs_fail "vdb's --no-copy snapshot differs from the volume"
fi
KEPT=$(snaps)

# --- today's copy backup of the same RBD disks: read by qemu-nbd as rbd:POOL/IMAGE -------------
vs_virtsnap backup --repo "$REPO" --state-dir "$STATE" --json "$D" > "$W/c1.json" ||
  { cat "$W/c1.json" >&2; vs_fail "the copy backup of the RBD guest failed"; }
vs_assert_eq "$(jq -r '.domains[0] | [.ok, .mode, .disks[0].data_path] | map(tostring) | join(",")' "$W/c1.json")" \
  "true,overlay,qemu-nbd" "the copy backup of an RBD disk"
IDC=$(jq -r .id "$W/c1.json")
vs_virtsnap export --repo "$REPO" "$IDC" "$D" vda "$W/c1.qcow2"
"$VS_GUEST_SRC/verify-backup.sh" "$W/c1.qcow2" || vs_fail "the copy backup of the RBD disk is not consistent"
back_on_disk "after the copy backup"
vs_assert_eq "$(snaps)" "$KEPT" "the copy backup makes no RBD snapshot"

# --- (c) Ceph's monitor hangs just before the snapshot ------------------------------------------
# Only the monitor: with the OSD SIGSTOPped too, the commit of the overlay (QEMU's) waits for
# the cluster like the guest's writes, and after SIGCONT the single OSD's PGs sometimes stay
# "waiting for readable" (Ceph's read lease) for minutes: QEMU's block-commit then blocks in
# its drain with its monitor, and virtsnap in virDomainBlockCommit (measured: 341 s, until
# killed). Without a monitor, a new client (virtsnap's snapshot) cannot connect while the
# guest's established session keeps its I/O going: the error must come in bounded time,
# the overlay committed, while the monitor is still down.
vs_gexec "$D" 'echo before-hang > /data/mark && sync' >/dev/null
hang() { for f in "$CD"/mon.*.pid; do kill -"$1" "$(cat "$f")" 2>/dev/null || true; done; }
vs_on_exit hang CONT        # never leave the cluster stopped for the stop at exit
rc=0
VIRTSNAP_FAULT=sleep:before-storage-snapshot:4000 vs_virtsnap backup --repo "$REPO" --state-dir "$STATE" \
  --storage-snapshot --json "$D" > "$W/f1.json" 2> "$W/f1.err" & bpid=$!
sleep 2
hang STOP
t0=$(date +%s)
for _ in $(seq 60); do vs_alive "$bpid" || break; sleep 1; done
el=$(( $(date +%s) - t0 ))
vs_alive "$bpid" && { hang CONT; wait "$bpid" || true; vs_fail "virtsnap still running ${el}s after Ceph's monitor stopped"; }
wait "$bpid" || rc=$?
cat "$W/f1.json" "$W/f1.err" >&2
vs_log "Ceph's monitor hung: virtsnap ended ${el}s after it stopped"
back_on_disk "with Ceph's monitor still down"
hang CONT
[ "$rc" -ne 0 ] || vs_fail "a backup whose storage did not answer exited 0"
err=$(jq -r '.domains[0].error' "$W/f1.json")
vs_assert_contains "$err" "$D/vda" "the error names the disk"
vs_assert_contains "$err" "rbd $CEPH_POOL/$IMG" "the error names the rbd image"
vs_assert_contains "$err" "cluster" "the error says the cluster did not answer"
vs_virtsnap recover --state-dir "$STATE" > "$W/r1.out" 2>&1 || { cat "$W/r1.out" >&2; vs_fail "recover after the hung cluster failed"; }
cat "$W/r1.out" >&2
back_on_disk "after Ceph hung and recover"
vs_assert_eq "$(vs_gexec "$D" 'cat /data/mark')" before-hang "the guest's data written before the hang"
vs_assert_eq "$(snaps)" "$KEPT" "no rbd snapshot left by the failed run"

# --- kill -9 right after the RBD snapshot; recover -----------------------------------------------
rc=0
VIRTSNAP_FAULT=after-storage-snapshot vs_virtsnap backup --repo "$REPO" --state-dir "$STATE" \
  --storage-snapshot "$D" > "$W/k1.out" 2>&1 || rc=$?
[ "$rc" -ne 0 ] || vs_fail "the killed backup exited 0"
[ "$(snaps)" != "$KEPT" ] || vs_fail "the killed run made no rbd snapshot"
vs_assert_eq "$(dom_xpath 'count(//disk/backingStore/source) > 0')" true "the guest on its overlay after the kill"
vs_virtsnap recover --state-dir "$STATE" > "$W/r2.out" 2>&1 || { cat "$W/r2.out" >&2; vs_fail "recover failed"; }
cat "$W/r2.out" >&2
vs_assert_contains "$(cat "$W/r2.out")" "deleted storage snapshot virtsnap-" "recover says what it deleted"
back_on_disk "after kill -9 and recover"
vs_assert_eq "$(snaps)" "$KEPT" "only the --no-copy backup's snapshots remain"
vs_assert_eq "$(vs_virtsnap list --repo "$REPO" --json | jq -r '[.[].id] | join(",")')" "$ID1,$ID2,$IDC" \
  "no backup from the failed and killed runs"

# Not stranded: the next backup works, and its copy (the guest kept writing its records
# through the hang, the commit and the kill) is a quiesced, complete one.
vs_virtsnap backup --repo "$REPO" --state-dir "$STATE" --storage-snapshot=rbd --json "$D" > "$W/s3.json" ||
  { cat "$W/s3.json" >&2; vs_fail "the backup after the faults failed"; }
ID3=$(jq -r .id "$W/s3.json")
back_on_disk "after the last backup"
vs_assert_eq "$(snaps)" "$KEPT" "the last backup's snapshots deleted"
vs_virtsnap export --repo "$REPO" "$ID3" "$D" vda "$W/e3.qcow2"
"$VS_GUEST_SRC/verify-backup.sh" "$W/e3.qcow2" || vs_fail "the backup after the faults is not consistent"

# The key never reached QEMU's argv, a log or the repository.
qpid=$(cat "/run/libvirt/qemu/$D.pid")
qargv=$(tr '\0' ' ' < "/proc/$qpid/cmdline")
[[ "$qargv" == *"file.driver=rbd"* || "$qargv" == *'"driver":"rbd"'* ]] || vs_fail "QEMU's argv names no rbd disk: $qargv"
[[ "$qargv" != *"$CEPH_KEY"* ]] || vs_fail "the Ceph key is in QEMU's argv"
! grep -rqF "$CEPH_KEY" "$W"/*.json "$W"/*.out "$W"/*.err "$REPO" "$STATE" || vs_fail "the Ceph key leaked"
vs_log "backup-storage-rbd: all checks passed"
