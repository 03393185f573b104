#!/usr/bin/env bash
# net-sources: the NFS and iSCSI sources (block/source-nfs.c, source-iscsi.c) against a
# real tgtd and nfs-ganesha on 127.0.0.1, through tests/block/source/netio (the public API).
# Bytes read back exactly (v3, v4, iSCSI), writes land exactly (cmp with the target's own
# file), the copy engine into a repository and `virtsnap export` give the original bytes,
# and each fault gives the outcome asserted: unreachable, wrong export/IQN/LUN, missing file,
# permission denied, CHAP failure (credentials never printed), a LUN too small (refused,
# nothing written), and the server killed (or hung by SIGSTOP) half way through a read: back
# inside the reconnect bound the data is right, not back the error is clear and in time.
. "$VS_SOURCE_ROOT/tests/lib/harness.sh"
vs_require_root

NETIO=${NETIO:-$VS_BUILD_ROOT/tests/block/source/netio}
[ -x "$NETIO" ] || vs_fail "netio not built: $NETIO"
W=$(vs_workdir)
# Small bounds keep the fault cases short; the kill cases restart the server within them.
export VIRTSNAP_NET_RECONNECT_SECS=20 VIRTSNAP_NET_TIMEOUT_SECS=10
SECRET=vs-Chap-Secret-4711

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# 48 MiB: data, 16 MiB of zeros, data (the zeros must come back as zeros, not be skipped)
{ head -c 16M /dev/urandom; head -c 16M /dev/zero; head -c 16M /dev/urandom; } > "$W/pat.img"

# netio_ok WHAT ARGS...: must succeed
netio_ok() {
  local what=$1 out; shift
  out=$("$NETIO" "$@" 2>&1) || vs_fail "$what: netio $*: $out"
  vs_log "ok: $what ${out:+($out)}"
}

# netio_fails WHAT NEEDLE MAX_SECS ARGS...: must fail within MAX_SECS, NEEDLE in its message,
# and the CHAP secret nowhere in it
netio_fails() {
  local what=$1 needle=$2 max=$3 t0 out rc=0; shift 3
  t0=$(now_ms)
  out=$("$NETIO" "$@" 2>&1) || rc=$?
  NETIO_OUT=$out
  [ "$rc" = 1 ] || vs_fail "$what: expected exit 1, got $rc: $out"
  vs_assert_contains "$out" "$needle" "$what"
  case "$out" in *"$SECRET"*) vs_fail "$what: the CHAP secret appears in: $out";; esac
  [ $(( $(now_ms) - t0 )) -le $((max * 1000)) ] || vs_fail "$what: took more than ${max}s: $out"
}

same() { cmp "$1" "$2" >/dev/null || vs_fail "$3: $1 and $2 differ"; vs_log "ok: $3: bytes equal"; }

# across_restart WHAT URL RESTART_CMD STATUS_CMD...: a read during which the server is killed
# half way and restarted 2 s later gives the pattern exactly, and took at least those 2 s
# (it crossed the outage rather than finishing before it); then the server answers again
across_restart() {
  local what=$1 url=$2 restart=$3 t0 ms; shift 3
  t0=$(now_ms)
  netio_ok "$what: killed half way, restarted after 2 s" --at-half "$restart" read "$url" "$W/k.out"
  same "$W/k.out" "$W/pat.img" "$what: read across a restart"
  ms=$(( $(now_ms) - t0 ))
  [ "$ms" -ge 2000 ] || vs_fail "$what: the read took ${ms} ms: it cannot have crossed a 2 s outage"
  vs_log "ok: $what: read across the restart took $ms ms"
  for _ in $(seq 150); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  vs_fail "$what: the server did not come back"
}

# ---------------------------------------------------------------- a block device (loop)
# the same sink API on a local device: exact bytes, the zero MiBs punched through to the
# loop's backing file (16 MiB x 2 allocated, not 48), a pattern too big refused untouched
dev=$(vs_loopdev "$W/loop.img" 48M)
netio_ok "loop: write" write "$dev" "$W/pat.img"
same "$dev" "$W/pat.img" "loop: device after write"
kib=$(du -k "$W/loop.img" | cut -f1)
[ "$kib" -ge 32768 ] && [ "$kib" -le 34816 ] || vs_fail "loop: $kib KiB allocated, expected 32-34 MiB"
vs_log "ok: loop: $kib KiB allocated in the backing file"
head -c 49M /dev/urandom > "$W/big.img"
netio_fails "loop: device too small" "too small: 50331648 bytes, 51380224 needed" 5 write "$dev" "$W/big.img"
same "$dev" "$W/pat.img" "loop: untouched by the refused write"

# ---------------------------------------------------------------- iSCSI
ISCSI_SIZE=48M ISCSI_LUNS=2 vs_iscsi_start
U=$ISCSI_URL_1
PORTAL_BAD=iscsi://127.0.0.1:1/$ISCSI_IQN/1

netio_ok "iscsi: write the pattern" write "$U" "$W/pat.img"
same "$VS_ISCSI_DIR/lun1.img" "$W/pat.img" "iscsi: LUN file after write"
netio_ok "iscsi: read" read "$U" "$W/i.out"
same "$W/i.out" "$W/pat.img" "iscsi: read back"
netio_ok "iscsi: backup" backup "$U" "$W/repo-i"
vs_virtsnap export --repo "$W/repo-i" latest net vda "$W/i.exp" >/dev/null
same "$W/i.exp" "$W/pat.img" "iscsi: engine + virtsnap export"

# LUN 2 thin provisioned: GET LBA STATUS reports the hole punched in its backing file as
# zeros (never read), the rest as data; read and engine still give the exact bytes
U2=$ISCSI_URL_2
TGT_IPC_SOCKET=$VS_ISCSI_DIR/tgtd.sock tgtadm -C 0 --lld iscsi --mode logicalunit --op update \
  --tid 1 --lun 2 --params thin_provisioning=1
netio_ok "iscsi: write LUN 2" write "$U2" "$W/pat.img"
fallocate -p -o 16M -l 16M "$VS_ISCSI_DIR/lun2.img"
vs_assert_eq "$("$NETIO" extents "$U2" 2>&1 | tr '\n' ' ')" \
  "0 16777216 data 16777216 16777216 zero 33554432 16777216 data " "iscsi: extents of a thin LUN"
netio_ok "iscsi: read thin LUN" read "$U2" "$W/i-thin.out"
same "$W/i-thin.out" "$W/pat.img" "iscsi: read of a thin LUN"
netio_ok "iscsi: backup thin LUN" backup "$U2" "$W/repo-thin"
vs_virtsnap export --repo "$W/repo-thin" latest net vda "$W/i-thin.exp" >/dev/null
same "$W/i-thin.exp" "$W/pat.img" "iscsi: thin LUN, engine + virtsnap export"
vs_assert_eq "$("$NETIO" extents "$U" 2>&1)" "0 50331648 data" "iscsi: extents of a LUN that is not thin"

netio_fails "iscsi: wrong LUN" "(wrong LUN?)" 15 read "iscsi://127.0.0.1:$ISCSI_PORT/$ISCSI_IQN/9" -
netio_fails "iscsi: wrong IQN" "Target not found" 15 read "iscsi://127.0.0.1:$ISCSI_PORT/iqn.2000-01.nope:x/1" -
netio_fails "iscsi: unreachable" "cannot connect to the portal 127.0.0.1:1" 15 read "$PORTAL_BAD" -
netio_fails "iscsi: LUN too small" "too small: 50331648 bytes, 51380224 needed (nothing written)" 15 \
  write "$U" "$W/big.img"
same "$VS_ISCSI_DIR/lun1.img" "$W/pat.img" "iscsi: LUN untouched by the refused write"

restart_iscsi="kill -9 \$(cat $VS_ISCSI_DIR/tgtd.pid); (sleep 2; ISCSI_PORT=$ISCSI_PORT ISCSI_SIZE=48M ISCSI_LUNS=2 $VS_TARGETS_SRC/iscsi-target.sh start $VS_ISCSI_DIR) >>$W/restart.log 2>&1 &"
wait_iscsi() { for _ in $(seq 100); do "$VS_TARGETS_SRC/iscsi-target.sh" status "$VS_ISCSI_DIR" >/dev/null 2>&1 && return 0; sleep 0.2; done; vs_fail "tgtd did not come back"; }
across_restart "iscsi: tgtd" "$U" "$restart_iscsi" "$VS_TARGETS_SRC/iscsi-target.sh" status "$VS_ISCSI_DIR"
netio_ok "iscsi: tgtd killed during a backup, restarted" --at-half "$restart_iscsi" backup "$U" "$W/repo-i2"
wait_iscsi
vs_virtsnap export --repo "$W/repo-i2" latest net vda "$W/i2.exp" >/dev/null
same "$W/i2.exp" "$W/pat.img" "iscsi: backup across a tgtd restart, exported"
# a server that hangs (SIGSTOP) instead of dying: no RST, only silence, caught by the timeout
hang_ok() {   # hang_ok WHAT URL PID
  local t0 ms
  t0=$(now_ms)
  VIRTSNAP_NET_TIMEOUT_SECS=2 netio_ok "$1: stopped half way for 4 s" \
    --at-half "kill -STOP $3; (sleep 4; kill -CONT $3) &" read "$2" "$W/h.out"
  same "$W/h.out" "$W/pat.img" "$1: read across a 4 s hang"
  ms=$(( $(now_ms) - t0 ))
  [ "$ms" -ge 4000 ] || vs_fail "$1: the read took ${ms} ms: it cannot have crossed a 4 s hang"
  VIRTSNAP_NET_TIMEOUT_SECS=2 VIRTSNAP_NET_RECONNECT_SECS=3 netio_fails "$1: stopped for good" \
    "not re-established within 3 s" 20 --at-half "kill -STOP $3" read "$2" -
  kill -CONT "$3"
}
hang_ok "iscsi: tgtd" "$U" "$(cat "$VS_ISCSI_DIR/tgtd.pid")"
VIRTSNAP_NET_RECONNECT_SECS=3 netio_fails "iscsi: tgtd killed, not restarted" \
  "not re-established within 3 s" 20 --at-half "kill -9 \$(cat $VS_ISCSI_DIR/tgtd.pid)" read "$U" -
vs_assert_contains "$NETIO_OUT" "iscsi: pread: $U: connection lost" "iscsi: the error after the kill"
"$VS_TARGETS_SRC/iscsi-target.sh" stop "$VS_ISCSI_DIR" >/dev/null 2>&1 || true
ISCSI_PORT=$ISCSI_PORT ISCSI_SIZE=48M ISCSI_LUNS=2 "$VS_TARGETS_SRC/iscsi-target.sh" start "$VS_ISCSI_DIR" >/dev/null 2>&1 ||
  vs_fail "tgtd restart failed"

# CHAP: an account bound to the target makes every login need it
export TGT_IPC_SOCKET=$VS_ISCSI_DIR/tgtd.sock
tgtadm -C 0 --lld iscsi --mode account --op new --user vsuser --password "$SECRET"
tgtadm -C 0 --lld iscsi --mode account --op bind --tid 1 --user vsuser
printf 'user=vsuser\npassword=%s\n' "$SECRET" > "$W/chap"; chmod 600 "$W/chap"
printf 'user=vsuser\npassword=wrong-%s\n' "$SECRET" > "$W/chap-bad"; chmod 600 "$W/chap-bad"
netio_fails "iscsi: CHAP needed, none given" "Authentication failure" 15 read "$U" -
netio_fails "iscsi: CHAP wrong password" "(CHAP user or password rejected)" 15 --auth-file "$W/chap-bad" read "$U" -
netio_fails "iscsi: wrong password in the URL, not shown" "iscsi://127.0.0.1:$ISCSI_PORT/" 15 \
  read "iscsi://vsuser%wrong$SECRET@127.0.0.1:$ISCSI_PORT/$ISCSI_IQN/1" -
chmod 644 "$W/chap"
netio_fails "iscsi: credentials file readable by others" "readable by its owner only" 5 --auth-file "$W/chap" read "$U" -
chmod 600 "$W/chap"
out=$("$NETIO" --auth-file "$W/chap" read "$U" "$W/i3.out" 2>&1) || vs_fail "iscsi: CHAP read: $out"
case "$out" in *"$SECRET"*) vs_fail "iscsi: the secret appears in: $out";; esac
same "$W/i3.out" "$W/pat.img" "iscsi: read with CHAP"

# ---------------------------------------------------------------- NFS
# No_Root_Squash: real uids are checked, so a uid=65534 client is refused a 0600 root file
export NFS_SQUASH=none
vs_nfs_start
E=$NFS_EXPORT_DIR
cp "$W/pat.img" "$E/d.img"
V3=$NFS_URL/d.img
V4="$NFS_URL/d.img$NFS_V4_ARGS"

netio_ok "nfs v3: read" read "$V3" "$W/n3.out"
same "$W/n3.out" "$W/pat.img" "nfs v3: read back"
netio_ok "nfs v4: read" read "$V4" "$W/n4.out"
same "$W/n4.out" "$W/pat.img" "nfs v4: read back"
truncate -s 48M "$E/w.img"
netio_ok "nfs v3: write" write "$NFS_URL/w.img" "$W/pat.img"
same "$E/w.img" "$W/pat.img" "nfs v3: the export's file after write"
netio_fails "nfs v4: write refused at open" "use NFSv3" 5 write "$NFS_URL/w.img$NFS_V4_ARGS" "$W/pat.img"
netio_fails "nfs v3: file too small" "too small" 10 write "$NFS_URL/w.img" "$W/big.img"
same "$E/w.img" "$W/pat.img" "nfs v3: file untouched by the refused write"
netio_ok "nfs v3: backup" backup "$V3" "$W/repo-n3"
vs_virtsnap export --repo "$W/repo-n3" latest net vda "$W/n3.exp" >/dev/null
same "$W/n3.exp" "$W/pat.img" "nfs v3: engine + virtsnap export"
netio_ok "nfs v4: backup" backup "$V4" "$W/repo-n4"
vs_virtsnap export --repo "$W/repo-n4" latest net vda "$W/n4.exp" >/dev/null
same "$W/n4.exp" "$W/pat.img" "nfs v4: engine + virtsnap export"

netio_fails "nfs v3: missing file" "nfs: open: $NFS_URL/nope.img: open:" 15 read "$NFS_URL/nope.img" -
netio_fails "nfs v3: missing file (hint)" "(no such file)" 15 read "$NFS_URL/nope.img" -
netio_fails "nfs v4: missing file" "(no such file)" 15 read "$NFS_URL/nope.img$NFS_V4_ARGS" -
netio_fails "nfs v3: wrong export" "(no such export" 15 read "nfs://127.0.0.1/nope/d.img" -
netio_fails "nfs v4: wrong export" "(no such export" 15 read "nfs://127.0.0.1/nope/d.img$NFS_V4_ARGS" -
# a file ganesha has not seen yet (it caches attributes: a chmod of a file already read
# may not be seen at once)
cp "$W/pat.img" "$E/secret.img"; chmod 600 "$E/secret.img"
netio_fails "nfs v3: permission denied" "(permission denied" 15 read "$NFS_URL/secret.img?uid=65534&gid=65534" -
netio_fails "nfs v4: permission denied" "(permission denied" 15 \
  read "$NFS_URL/secret.img$NFS_V4_ARGS&uid=65534&gid=65534" -
netio_fails "nfs v3: unreachable" "(server unreachable, or no NFS server there)" 20 \
  read "$V3?nfsport=1&mountport=1" -
netio_fails "nfs v4: unreachable" "(server unreachable, or no NFS server there)" 20 \
  read "$NFS_URL/d.img?version=4&nfsport=1" -

restart_nfs="kill -9 \$(cat $VS_NFS_DIR/ganesha.pid); (sleep 2; NFS_SQUASH=none $VS_TARGETS_SRC/nfs-target.sh start $VS_NFS_DIR) >>$W/restart.log 2>&1 &"
across_restart "nfs v3: ganesha" "$V3" "$restart_nfs" "$VS_TARGETS_SRC/nfs-target.sh" status "$VS_NFS_DIR"
across_restart "nfs v4: ganesha" "$V4" "$restart_nfs" "$VS_TARGETS_SRC/nfs-target.sh" status "$VS_NFS_DIR"
# the engine reads NFS on two reader threads: the kill lands while their requests are in flight
netio_ok "nfs v3: ganesha killed during a backup, restarted" --at-half "$restart_nfs" backup "$V3" "$W/repo-nk"
for _ in $(seq 150); do "$VS_TARGETS_SRC/nfs-target.sh" status "$VS_NFS_DIR" >/dev/null 2>&1 && break; sleep 0.2; done
vs_virtsnap export --repo "$W/repo-nk" latest net vda "$W/nk.exp" >/dev/null
same "$W/nk.exp" "$W/pat.img" "nfs v3: backup across a ganesha restart, exported"
hang_ok "nfs v3: ganesha" "$V3" "$(cat "$VS_NFS_DIR/ganesha.pid")"
hang_ok "nfs v4: ganesha" "$V4" "$(cat "$VS_NFS_DIR/ganesha.pid")"
VIRTSNAP_NET_RECONNECT_SECS=3 netio_fails "nfs v3: ganesha killed, not restarted" \
  "not re-established within 3 s" 30 --at-half "kill -9 \$(cat $VS_NFS_DIR/ganesha.pid)" read "$V3" -
vs_assert_contains "$NETIO_OUT" "nfs: pread: $V3: connection lost" "nfs v3: the error after the kill"
vs_log "net-sources: all assertions passed"
