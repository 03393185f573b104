#!/usr/bin/env bash
# snapshot-rbd: the rbd provider (block/snapshot/snapshot-rbd.c, librbd) against a real
# single-node Ceph (tests/targets/ceph-target.sh: mon + memstore OSD on 127.0.0.1, no S3),
# through tests/block/snapshot/snapio: a snapshot keeps its bytes while the image changes
# (read back through its rbd: exposure with the image source, i.e. qemu-nbd), diff between two
# snapshots names exactly the written and the discarded ranges, a clone reads the snapshot's
# bytes and protects it (delete then refuses, naming the clones), rollback restores the head,
# hostile handles and names are refused, and a stopped cluster is an error in bounded time.
# Run under /tmp/vs-integration.lock (Ceph's ports are the machine's).
. "$VS_SOURCE_ROOT/tests/lib/harness.sh"
vs_require_root
for b in ceph-mon ceph-osd rbd qemu-io; do
  command -v $b >/dev/null || vs_skip "$b missing (scripts/deps.sh --test)"
done
SNAPIO=${SNAPIO:-$VS_BUILD_ROOT/tests/block/snapshot/snapio}
"$SNAPIO" --rbd exists x 2>&1 | grep -q "built without librbd" && vs_skip "virtsnap built without librbd (librbd-dev)"
W=$(vs_workdir)
CD=$W/ceph
export VIRTSNAP_NET_TIMEOUT_SECS=5     # the stopped-cluster case below
vs_on_exit "$VS_TARGETS_SRC/ceph-target.sh" stop "$CD"
t0=$(date +%s)
CEPH_RGW=0 CEPH_OSD_BYTES=$((1 << 30)) "$VS_TARGETS_SRC/ceph-target.sh" start "$CD" >&2 ||
  vs_fail "ceph-target.sh start failed (logs in $CD/log)"
vs_log "Ceph up in $(( $(date +%s) - t0 )) s"
. "$CD/ceph.env"
IMG=vst-img-$$
R="rbd -c $CEPH_CONF"
qurl() { echo "rbd:$CEPH_POOL/$1:conf=$CEPH_CONF"; }
snap() { "$SNAPIO" --rbd --kind rbd --disk vm1/vda --rbd-pool "$CEPH_POOL" --rbd-image "$IMG" --rbd-conf "$CEPH_CONF" "$@"; }
head_sha() { "$SNAPIO" --image sha-url "$(qurl "$1")" | cut -d' ' -f1; }
fails() {
  local needle=$1 out rc=0; shift
  out=$("$@" 2>&1) || rc=$?
  [ "$rc" = 1 ] || vs_fail "expected exit 1 from $*, got $rc: $out"
  vs_assert_contains "$out" "$needle" "${*:2}"
}

head -c 64M /dev/urandom > "$W/pat.img"
SHA0=$(sha256sum "$W/pat.img" | cut -d' ' -f1)
$R import --no-progress "$W/pat.img" "$CEPH_POOL/$IMG" >&2
vs_assert_eq "$(head_sha "$IMG")" "$SHA0" "image bytes after import"

vs_assert_eq "$(snap create s1)" s1 "handle"
vs_assert_eq "$(snap exists s1)" yes "exists"
vs_assert_eq "$(snap exists s9)" no "exists (never made)"
fails "create: rbd $CEPH_POOL/$IMG@s1: File exists: pick another label" snap create s1
# the image changes: 1 MiB written at 8 MiB, 4 MiB discarded at 32 MiB (one whole object)
qemu-io -f raw -c 'write -P 0x5a 8M 1M' "$(qurl "$IMG")" >/dev/null
qemu-io -f raw -c 'discard 32M 4M' "$(qurl "$IMG")" >/dev/null
HSHA=$(head_sha "$IMG")
[ "$HSHA" != "$SHA0" ] || vs_fail "the image did not change"
vs_assert_eq "$(snap expose s1)" "$(qurl "$IMG@s1") image" "expose"
read -r s size < <(snap sha s1) || vs_fail "reading s1 failed"
vs_assert_eq "$s" "$SHA0" "snapshot s1's bytes after the image changed (rbd: through the image source)"
vs_assert_eq "$size" $((64 << 20)) "snapshot size"
# a conf path with ':' and '\' (escaped in the rbd: string, unescaped for QEMU) and a user id
cp "$CEPH_CONF" "$W/c:e\\ph.conf"
read -r s _ < <("$SNAPIO" --rbd --kind rbd --rbd-pool "$CEPH_POOL" --rbd-image "$IMG" --rbd-user admin \
  --rbd-conf "$W/c:e\\ph.conf" sha s1) || vs_fail "reading s1 with an odd conf path and a user failed"
vs_assert_eq "$s" "$SHA0" "s1 through rbd:...:id=admin:conf=c\\:e\\\\ph.conf"

# diff: what changed between s1 and s2 and nothing else; from nothing: all 64 MiB
snap create s2 >/dev/null
D=$(snap diff s1 s2)
vs_log "diff s1 s2: $(echo $D)"
vs_assert_eq "$(echo "$D" | awk '$3=="data"{print $1, $2}' | tr '\n' ' ')" "$((8 << 20)) $((1 << 20)) " "diff s1 s2: data"
vs_assert_eq "$(echo "$D" | awk '$3=="zero"{print $1, $2}' | tr '\n' ' ')" "$((32 << 20)) $((4 << 20)) " "diff s1 s2: zero"
vs_assert_eq "$(snap diff - s1 | awk '$3=="data"{n+=$2} END{print n}')" $((64 << 20)) "diff from nothing to s1"
vs_assert_eq "$(snap diff s2 s2 | wc -l)" 0 "diff s2 s2"

# clone: a child of the protected snapshot, with its bytes; the snapshot cannot go while it lives
vs_assert_eq "$(snap clone s1 "$IMG-c")" "rbd:$CEPH_POOL/$IMG-c" "clone"
vs_assert_eq "$(head_sha "$IMG-c")" "$SHA0" "clone bytes"
$R snap ls "$CEPH_POOL/$IMG" --format json | grep -q '"protected":"true"' ||
  $R info "$CEPH_POOL/$IMG@s1" | grep -q 'protected: True' || vs_fail "s1 not protected after clone"
qemu-io -f raw -c 'write -P 0x11 0 1M' "$(qurl "$IMG-c")" >/dev/null
read -r s _ < <(snap sha s1)
vs_assert_eq "$s" "$SHA0" "s1 after the clone was written"
fails "delete: rbd $CEPH_POOL/$IMG@s1: Device or resource busy: clones of it exist" snap delete s1
vs_assert_eq "$(snap exists s1)" yes "s1 kept when delete refused"
$R rm --no-progress "$CEPH_POOL/$IMG-c" >&2

# rollback to s1, then to s2
snap rollback s1 || vs_fail "rollback s1"
vs_assert_eq "$(head_sha "$IMG")" "$SHA0" "image after rollback to s1"
snap rollback s2 || vs_fail "rollback s2"
vs_assert_eq "$(head_sha "$IMG")" "$HSHA" "image after rollback to s2"

snap delete s1 || vs_fail "delete s1 (protected, clone gone)"
vs_assert_eq "$(snap exists s1)" no "exists after delete"
fails "delete: rbd $CEPH_POOL/$IMG@s1: No such file or directory" snap delete s1
fails "expose: rbd $CEPH_POOL/$IMG@s1: No such file or directory" snap expose s1

# a snapshot deleted by hand under a backup that needs it
snap create s3 >/dev/null
$R snap rm --no-progress "$CEPH_POOL/$IMG@s3" >&2
fails "snapshot: vm1/vda: expose: rbd $CEPH_POOL/$IMG@s3: No such file or directory" snap sha s3
vs_assert_eq "$(snap exists s3)" no "exists after a delete by hand"

# hostile input
fails "handle \"s1/../x\" is not valid" snap delete s1/../x
fails "rbd image \"a:conf=/etc/x\" is not valid" "$SNAPIO" --rbd --kind rbd --rbd-pool rbd --rbd-image a:conf=/etc/x exists s2
fails "a file disk is not an rbd image" "$SNAPIO" --rbd --kind file --path /x exists s2

# the cluster stops: bounded, clear
"$VS_TARGETS_SRC/ceph-target.sh" stop "$CD"
t0=$(date +%s)
fails "snapshot: vm1/vda: exists: rbd $CEPH_POOL/$IMG: " snap exists s2
el=$(( $(date +%s) - t0 ))
[ "$el" -le 20 ] || vs_fail "a stopped cluster took ${el}s to report"
vs_log "ok: stopped cluster reported in ${el}s"
vs_log "PASS"
