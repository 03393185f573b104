#!/usr/bin/env bash
# snapshot-iscsi-hook: the hook provider (block/snapshot/snapshot-hook.c) with the shipped
# tests/hooks/iscsi-tgt-hook.sh on the loopback tgt target (LUN files on a reflink XFS): a
# snapshot of LUN 1 becomes a new read-only LUN whose bytes, read with the iSCSI source
# (libiscsi), stay those of the point in time while LUN 1 changes; clone, rollback (LUN 1 read
# back over iSCSI), exists and delete (the LUN and its file gone). Run under
# /tmp/vs-integration.lock (tgtd's ports are the machine's).
. "$VS_SOURCE_ROOT/tests/lib/harness.sh"
vs_require_root
command -v mkfs.xfs >/dev/null || vs_skip "mkfs.xfs missing (xfsprogs)"
SNAPIO=${SNAPIO:-$VS_BUILD_ROOT/tests/block/snapshot/snapio}
HOOK=$VS_SOURCE_ROOT/tests/hooks/iscsi-tgt-hook.sh
W=$(vs_workdir)
ISCSI_REFLINK=1 ISCSI_SIZE=64M vs_iscsi_start
LUNF=$VS_ISCSI_DIR/store/lun1.img
[ -f "$LUNF" ] || vs_fail "no LUN file at $LUNF"
printf 'TARGET_DIR=%s\nTARGET_SCRIPT=%s\n' "$VS_ISCSI_DIR" "$VS_TARGETS_SRC/iscsi-target.sh" > "$W/hook.conf"
chmod 600 "$W/hook.conf"

snap() {
  "$SNAPIO" --hook "$HOOK" --hook-config "$W/hook.conf" --hook-timeout 20000 --kind iscsi --disk vm1/sda \
    --iscsi-portal "$ISCSI_PORTAL" --iscsi-iqn "$ISCSI_IQN" --iscsi-lun 1 "$@"
}
sha_url() { "$SNAPIO" sha-url "$1" | cut -d' ' -f1; }
fails() {
  local needle=$1 out rc=0; shift
  out=$("$@" 2>&1) || rc=$?
  [ "$rc" = 1 ] || vs_fail "expected exit 1 from $*, got $rc: $out"
  vs_assert_contains "$out" "$needle" "${*:2}"
}

head -c 64M /dev/urandom | dd of="$LUNF" conv=notrunc status=none
sync
SHA0=$(sha_url "$ISCSI_URL_1")
vs_assert_eq "$SHA0" "$(sha256sum "$LUNF" | cut -d' ' -f1)" "LUN 1 over iSCSI = its file"

H=$(snap create b1-sda) || vs_fail "create failed"
vs_assert_contains "$H" "b1-sda@lun" "handle"
LUN=${H##*@lun}
SFILE=$VS_ISCSI_DIR/store/snap-1-$LUN.img
filefrag -v "$SFILE" | grep -q shared || vs_fail "the snapshot LUN's file is not a reflink"
vs_assert_eq "$(snap expose "$H")" "iscsi://$ISCSI_PORTAL/$ISCSI_IQN/$LUN" "expose"
vs_assert_eq "$(snap exists "$H")" yes "exists"

dd if=/dev/urandom of="$LUNF" bs=1M seek=4 count=2 conv=notrunc status=none
sync
[ "$(sha_url "$ISCSI_URL_1")" != "$SHA0" ] || vs_fail "LUN 1 did not change"
read -r s size < <(snap sha "$H") || vs_fail "reading the snapshot LUN failed"
vs_assert_eq "$s" "$SHA0" "snapshot LUN's bytes over iSCSI after LUN 1 changed"
vs_assert_eq "$size" $((64 << 20)) "snapshot LUN size"
"$VS_TARGETS_SRC/iscsi-target.sh" status "$VS_ISCSI_DIR" >/dev/null
TGT_IPC_SOCKET=$VS_ISCSI_DIR/tgtd.sock tgtadm -C 0 --lld iscsi --mode target --op show |
  awk -v l="LUN: $LUN" '$0 ~ l {f=1} f && /Readonly:/ {print $2; exit}' | grep -qx Yes ||
  vs_fail "snapshot LUN $LUN is not read-only"
vs_log "ok: snapshot LUN $LUN is read-only"

C=$(snap clone "$H" vm2-sda) || vs_fail "clone failed"
vs_assert_eq "$(sha_url "$C")" "$SHA0" "clone LUN's bytes ($C)"

snap rollback "$H" || vs_fail "rollback failed"
vs_assert_eq "$(sha_url "$ISCSI_URL_1")" "$SHA0" "LUN 1 over iSCSI after rollback"

snap delete "$H" || vs_fail "delete failed"
vs_assert_eq "$(snap exists "$H")" no "exists after delete"
[ ! -e "$SFILE" ] || vs_fail "snapshot file left: $SFILE"
fails "exit code 1 (attempt 1 of 1); stderr: \"iscsi-tgt-hook: delete: no snapshot LUN $LUN" snap delete "$H"
fails "iscsi-tgt-hook: expose: handle 'b1-sda' is not LABEL@lunN" snap expose b1-sda
fails "exit code 3: the hook does not support this operation" \
  "$SNAPIO" --hook "$HOOK" --hook-config "$W/hook.conf" --kind file --path /x exists a@lun2
vs_log "PASS"
