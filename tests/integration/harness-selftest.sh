#!/bin/bash
# harness-selftest.sh -- the harness's own promises, checked with child test scripts:
# cleanups run newest-first and all of them (one failing, on success, on vs_fail, on
# SIGTERM as sent by a meson timeout), vs_skip exits 77, helpers called in $(...) still
# register their cleanup; a test killed with SIGKILL leaves a domain, a pool, a loop
# device and a tgtd behind and vs_sweep of the next test removes them, while objects of a
# live test are left alone; the NFS (netfs pool) and iSCSI (iscsi-direct pool) helpers work
# and stop cleanly. No guest is booted: the domains here are only defined.
set -euo pipefail
. "${VS_SOURCE_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/lib/harness.sh"

vs_test_open --libvirt
P=vst-hst-$$
H=$VS_SOURCE_ROOT/tests/lib/harness.sh

mini_domain() {   # NAME: a defined-only domain, enough for libvirt bookkeeping
  cat > "$W/$1.xml" <<EOF
<domain type='qemu'><name>$1</name><memory unit='MiB'>64</memory>
  <os><type arch='x86_64' machine='q35'>hvm</type></os></domain>
EOF
}
child() {         # NAME BODY: run BODY as a separate test script using the harness
  printf '#!/bin/bash\nset -euo pipefail\n. %q\n%s\n' "$H" "$2" > "$W/$1.sh"
  VS_TEST_NAME=$1 bash "$W/$1.sh" 2>"$W/$1.log"
}

# A domain of this (live) test: the children's sweeps must not touch it.
mini_domain "$P-mine"
vs_domain_track "$P-mine"
virsh define "$W/$P-mine.xml" >/dev/null

# --- the opening: the work dir exists, W, REPO, STATE and D name what the tests use ----
vs_assert_eq "$W" "$VS_WORKDIR" "vs_test_open: W"
child hst-open 'vs_test_open --root cfg
[ -d "$W" ] && [ "$W" = "$VS_WORKDIR" ] && [ "$REPO" = "$W/repo" ] && [ "$STATE" = "$W/state" ] &&
  [ "$D" = "vst-cfg-$$" ]' || vs_fail "vs_test_open: W, REPO, STATE or D not set (see $W/hst-open.log)"

# --- cleanup order, failure isolation, exit codes ------------------------------------
body='vs_on_exit sh -c "echo first >> '"$W"'/order"
vs_on_exit false
vs_on_exit sh -c "echo second >> '"$W"'/order"
dev=$(vs_workdir)'
: > "$W/order"; child hst-ok "$body; exit 0"
vs_assert_eq "$(tr '\n' ' ' < "$W/order")" "second first " "cleanup order (newest first, failure ignored)"

: > "$W/order"; rc=0; child hst-fail "$body; vs_fail deliberate" || rc=$?
vs_assert_eq "$rc" 1 "vs_fail exit code"
vs_assert_eq "$(tr '\n' ' ' < "$W/order")" "second first " "cleanups after vs_fail"

rc=0; out=$(child hst-skip 'vs_skip "not here"') || rc=$?
vs_assert_eq "$rc" 77 "vs_skip exit code"
vs_assert_eq "$out" "SKIP: not here" "vs_skip message"

: > "$W/order"
child hst-term "$body
sleep 60 & vs_on_exit kill \$!
echo \$\$ > $W/term.pid; wait" & cpid=$!
for _ in $(seq 100); do [ -s "$W/term.pid" ] && break; sleep 0.1; done
kill -TERM "$(cat "$W/term.pid")"
rc=0; wait "$cpid" || rc=$?
vs_assert_eq "$rc" 143 "exit code after SIGTERM"
vs_assert_eq "$(tr '\n' ' ' < "$W/order")" "second first " "cleanups after SIGTERM"
vs_assert_eq "$(ls -d /tmp/virtsnap-tests/hst-* 2>/dev/null | wc -l)" 0 "child work dirs removed"

# --- a SIGKILLed test's leftovers are swept; a live test's objects are not ----------------
C=$P-crash
child hst-crash "
W=\$(vs_workdir)
printf '%s\n' \"<domain type='qemu'><name>$C</name><memory unit='MiB'>64</memory><os><type arch='x86_64' machine='q35'>hvm</type></os></domain>\" > \$W/d.xml
vs_domain_track $C; virsh define \$W/d.xml >/dev/null
mkdir -p \$W/pool
printf '%s\n' \"<pool type='dir'><name>$C</name><target><path>\$W/pool</path></target></pool>\" > \$W/p.xml
vs_define_pool \$W/p.xml >/dev/null
dev=\$(vs_loopdev \$W/loop.img 8M)
ISCSI_SIZE=8M vs_iscsi_start
echo \"\$\$ \$dev \$(cat \$W/iscsi/tgtd.pid) \$W\" > $W/crash.tmp; mv $W/crash.tmp $W/crash.info
exec sleep 300" &
kill_child() { [ -s "$W/crash.info" ] && kill -KILL "$(cut -d' ' -f1 "$W/crash.info")" 2>/dev/null; true; }
vs_on_exit kill_child     # if this test fails before it kills the child itself
for _ in $(seq 300); do [ -s "$W/crash.info" ] && break; sleep 0.1; done
[ -s "$W/crash.info" ] || vs_fail "crash child did not set up in 30 s: $(cat "$W/hst-crash.log")"
read -r cpid cdev ctgtd cwd < "$W/crash.info"
# checked while the child lives: its objects are protected from every other sweep
out=$(virsh dominfo "$C" 2>&1) || vs_fail "setup: child's domain missing: $out
$(cat "$W/hst-crash.log")"
vs_alive "$ctgtd" || vs_fail "setup: child's tgtd not running"
kill -KILL "$cpid"; wait 2>/dev/null || true
vs_log "SIGKILLed child left: domain $C, pool $C, $cdev, tgtd $ctgtd, $cwd"
vs_sweep 2>&1 | sed 's/^/  /' >&2
if virsh dominfo "$C" >/dev/null 2>&1; then vs_fail "sweep left domain $C"; fi
if virsh pool-info "$C" >/dev/null 2>&1; then vs_fail "sweep left pool $C"; fi
if losetup -nO BACK-FILE "$cdev" 2>/dev/null | grep -q "$cwd"; then vs_fail "sweep left $cdev attached"; fi
for _ in $(seq 50); do vs_alive "$ctgtd" || break; sleep 0.1; done
! vs_alive "$ctgtd" || vs_fail "sweep left tgtd $ctgtd running"
[ ! -e "$cwd" ] || vs_fail "sweep left $cwd"
virsh dominfo "$P-mine" >/dev/null 2>&1 || vs_fail "a sweep removed the live test's domain $P-mine"
vs_log "ok: SIGKILLed test swept, live test's domain kept"

# --- NFS with the netfs pool emulation ------------------------------------------------
vs_nfs_start netfs
echo hello > "$NFS_EXPORT_DIR/probe.txt"
cat > "$W/nfspool.xml" <<EOF
<pool type='netfs'><name>$P-nfs</name>
  <source><host name='127.0.0.1'/><dir path='/export'/><format type='nfs'/></source>
  <target><path>$NFS_NETFS_TARGET</path></target></pool>
EOF
vs_define_pool "$W/nfspool.xml" >/dev/null
vs_assert_contains "$(virsh vol-list "$P-nfs")" probe.txt "netfs pool volumes"
if command -v nfs-cat >/dev/null; then
  vs_assert_eq "$(nfs-cat "$NFS_URL/probe.txt")" hello "file read over NFSv3 (libnfs)"
fi
gpid=$(cat "$VS_NFS_DIR/ganesha.pid")

# --- iSCSI with an iscsi-direct pool ---------------------------------------------------
ISCSI_SIZE=16M vs_iscsi_start
vs_assert_contains "$(iscsi-ls "iscsi://$ISCSI_PORTAL" 2>&1)" "$ISCSI_IQN" "iscsi-ls"
if vs_iscsi_direct_ok; then
  cat > "$W/iscsipool.xml" <<EOF
<pool type='iscsi-direct'><name>$P-iscsi</name>
  <source><host name='127.0.0.1' port='$ISCSI_PORT'/><device path='$ISCSI_IQN'/>
    <initiator><iqn name='iqn.2024-01.test.virtsnap:hst'/></initiator></source></pool>
EOF
  vs_define_pool "$W/iscsipool.xml" >/dev/null
  vs_assert_contains "$(virsh vol-list "$P-iscsi")" "unit:0:0:1" "iscsi-direct pool volumes"
else
  vs_log "libvirtd without iscsi-direct: pool part skipped"
fi
tpid=$(cat "$VS_ISCSI_DIR/tgtd.pid")

vs_cleanup_now
# the target scripts wait for their daemons themselves: no grace period here
! vs_alive "$gpid" || vs_fail "ganesha $gpid still running after cleanup"
! vs_alive "$tpid" || vs_fail "tgtd $tpid still running after cleanup"
if findmnt -rn -o TARGET | grep -q "^$W/"; then vs_fail "mounts left under $W: $(findmnt -rn -o TARGET | grep "^$W/")"; fi
for n in "$P-nfs" "$P-iscsi"; do
  if virsh pool-info "$n" >/dev/null 2>&1; then vs_fail "pool $n left"; fi
done
if virsh dominfo "$P-mine" >/dev/null 2>&1; then vs_fail "$P-mine left after cleanup"; fi
vs_log "harness-selftest: all checks passed"
