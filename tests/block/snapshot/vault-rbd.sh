#!/usr/bin/env bash
# vault-rbd: `virtsnap vault` incremental on a real single-node Ceph (tests/targets/ceph-target.sh:
# mon + memstore OSD, no S3): a snapshot-only backup of an RBD image (vault-mkbackup --rbd) is
# vaulted in full; after 5% of the image is written (and 4 MiB discarded), the next backup's vault is incremental against
# it (rbd_diff_iterate2 between the two snapshots) and reads at most 1.2x the changed bytes; both
# exports equal the image as it was at each snapshot, verify passes. With the earlier snapshots
# deleted by hand, the vault reads everything and says why. Run under /tmp/vs-integration.lock.
. "$VS_SOURCE_ROOT/tests/lib/harness.sh"
vs_require_root
for b in ceph-mon ceph-osd rbd qemu-io; do
  command -v $b >/dev/null || vs_skip "$b missing (scripts/deps.sh --test)"
done
MKBACKUP=${MKBACKUP:-$VS_BUILD_ROOT/tests/block/snapshot/vault-mkbackup}
SNAPIO=${SNAPIO:-$VS_BUILD_ROOT/tests/block/snapshot/snapio}
"$SNAPIO" --rbd exists x 2>&1 | grep -q "built without librbd" && vs_skip "virtsnap built without librbd (librbd-dev)"
W=$(vs_workdir)
CD=$W/ceph
R=$W/repo
vs_on_exit "$VS_TARGETS_SRC/ceph-target.sh" stop "$CD"
t0=$(date +%s)
CEPH_RGW=0 CEPH_OSD_BYTES=$((1 << 30)) "$VS_TARGETS_SRC/ceph-target.sh" start "$CD" >&2 ||
  vs_fail "ceph-target.sh start failed (logs in $CD/log)"
vs_log "Ceph up in $(( $(date +%s) - t0 )) s"
. "$CD/ceph.env"
# The manifest records no ceph.conf (Ceph's default search, which starts at $CEPH_CONF).
export CEPH_CONF
IMG=vst-vault-$$
qurl() { echo "rbd:$CEPH_POOL/$1:conf=$CEPH_CONF"; }
sha() { sha256sum "$1" | cut -d' ' -f1; }
mkb() { "$MKBACKUP" --repo "$R" --chunk-kib 256 --rbd --rbd-pool "$CEPH_POOL" --domain vm1 vda="$IMG"; }

head -c 64M /dev/urandom > "$W/pat.img"
rbd -c "$CEPH_CONF" import --no-progress "$W/pat.img" "$CEPH_POOL/$IMG" >&2
SHA1=$(sha "$W/pat.img")
ID1=$(mkb) || vs_fail "vault-mkbackup 1"
out=$(vs_virtsnap vault --repo "$R" --json "$ID1") || vs_fail "vault 1: $out"
vs_log "vault 1: $(jq -c '.disks[0] | {incremental, full_reason, bytes_read, bytes_changed}' <<<"$out")"
vs_assert_eq "$(jq -r '.disks[0].state, .disks[0].incremental, .disks[0].snapshot.provider' <<<"$out" | tr '\n' ' ')" \
  "vaulted false rbd " "first vault: full"
vs_assert_contains "$(jq -r '.disks[0].full_reason' <<<"$out")" "no earlier backup holds this disk" "why full"
vs_assert_eq "$(jq -r '.disks[0].bytes_read' <<<"$out")" $((64 << 20)) "first vault reads the whole image"

# 5% of the image changes: 13 writes of 256 KiB, most not chunk-aligned; and 4 MiB discarded
CHANGED=0
for i in 0 1 2 3 4 5 6 7 8 9 10 11; do
  off=$(( i * (5 << 20) + (i % 3) * 12288 ))
  qemu-io -f raw -c "write -P $((i + 1)) $off 256k" "$(qurl "$IMG")" >/dev/null
  CHANGED=$(( CHANGED + (256 << 10) ))
done
qemu-io -f raw -c "write -P 77 $((63 << 20)) 256k" "$(qurl "$IMG")" >/dev/null
CHANGED=$(( CHANGED + (256 << 10) ))
qemu-io -f raw -c "discard 56M 4M" "$(qurl "$IMG")" >/dev/null    # one whole object: the diff says zero
rbd -c "$CEPH_CONF" export --no-progress "$CEPH_POOL/$IMG" "$W/now.img" >&2
SHA2=$(sha "$W/now.img")
[ "$SHA2" != "$SHA1" ] || vs_fail "the image did not change"
ID2=$(mkb) || vs_fail "vault-mkbackup 2"
# the image goes on changing after the snapshot: vault reads the snapshot
qemu-io -f raw -c "write -P 99 0 8M" "$(qurl "$IMG")" >/dev/null
out=$(vs_virtsnap vault --repo "$R" --json "$ID2") || vs_fail "vault 2: $out"
vs_log "vault 2: $(jq -c '.disks[0] | {incremental, base, bytes_read, bytes_changed, bytes_stored}' <<<"$out")"
vs_assert_eq "$(jq -r '.disks[0].incremental, .disks[0].base' <<<"$out" | tr '\n' ' ')" "true $ID1 " \
  "second vault: incremental against the first"
read_b=$(jq -r '.disks[0].bytes_read' <<<"$out")
changed_b=$(jq -r '.disks[0].bytes_changed' <<<"$out")
[ "$read_b" -gt 0 ] && [ $(( read_b * 10 )) -le $(( CHANGED * 12 )) ] ||
  vs_fail "the incremental vault read $read_b bytes for $CHANGED changed: more than 1.2x"
[ "$changed_b" -ge $(( CHANGED + (4 << 20) )) ] ||
  vs_fail "the diff reported $changed_b changed bytes, $CHANGED were written and 4 MiB discarded"
vs_log "ok: incremental vault read $read_b bytes for $CHANGED changed ($(( read_b * 100 / CHANGED ))%)"

for n in 1 2; do
  id=ID$n; want=SHA$n
  vs_virtsnap export --repo "$R" "${!id}" vm1 vda "$W/out$n.raw" >/dev/null || vs_fail "export $n"
  vs_assert_eq "$(sha "$W/out$n.raw")" "${!want}" "backup $n exported equals its snapshot"
done
vs_virtsnap verify --repo "$R" >/dev/null || vs_fail "verify"

# the earlier snapshots deleted by hand: a full read, and why
ID3=$(mkb) || vs_fail "vault-mkbackup 3"
rbd -c "$CEPH_CONF" snap rm --no-progress "$CEPH_POOL/$IMG@virtsnap-$ID1-vda" >&2
rbd -c "$CEPH_CONF" snap rm --no-progress "$CEPH_POOL/$IMG@virtsnap-$ID2-vda" >&2
out=$(vs_virtsnap vault --repo "$R" --json "$ID3") || vs_fail "vault 3: $out"
vs_assert_eq "$(jq -r '.disks[0].incremental' <<<"$out")" false "third vault: full"
vs_assert_contains "$(jq -r '.disks[0].full_reason' <<<"$out")" "snapshots of the earlier vaulted backups of this disk are gone" \
  "why full"
vs_virtsnap verify --repo "$R" >/dev/null || vs_fail "verify after vault 3"
vs_log "PASS"
