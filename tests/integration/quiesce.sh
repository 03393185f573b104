#!/bin/bash
# quiesce.sh -- `virtsnap quiesce` / `unquiesce` as an outside scheduler drives them. Two guests
# frozen together (A with a data disk on the loopback iSCSI target's LUN 1, B), both say frozen
# inside; a backup of A and a second quiesce of A are refused naming the token; the target's LUN
# snapshot is taken meanwhile; unquiesce keeps the deadline, a second one is harmless; the
# snapshot LUN, backed up through a shut-off domain that uses it, verifies and holds the file A
# synced before the quiesce, with its checksum. Then a forgotten quiesce: the guardian thaws by
# a short --max-freeze and unquiesce says crash-consistent (exit 1); a guardian killed while it
# holds: recover thaws and removes the token. Last, B's agent stopped: quiesce of A and B fails
# and leaves nothing frozen and no token; with --suspend-fallback B is paused, and unquiesce
# resumes it, or, forgotten, the guardian by the deadline; every guardian ends.
set -euo pipefail
. "$VS_SOURCE_ROOT/tests/lib/harness.sh"

vs_test_open --libvirt
P=vst-qsc-$$
A=$P-a
B=$P-b
export VIRTSNAP_LOCK_DIR=$W/locks

fsfreeze_status() {
  virsh qemu-agent-command "$1" '{"execute":"guest-fsfreeze-status"}' | jq -r .return
}
# Token files that still hold guests (any state but the settled ones).
holding_tokens() {
  local n=0 f
  for f in "$STATE"/quiesce/*.json; do
    [ -e "$f" ] || continue
    case $(jq -r .state "$f") in unquiesced|guardian-thawed) ;; *) n=$((n + 1)) ;; esac
  done
  echo $n
}

# --- the LUN (an ext4 data disk) as A's vdb, and the two guests
mkdir -p "$W/iscsi"
"$VS_GUEST_SRC/mkdisk.sh" "$W/iscsi/lun1.img" 64M
ISCSI_SIZE=64M vs_iscsi_start
LUN_XML="<disk type='network' device='disk'><driver name='qemu' type='raw' cache='none'/>
  <source protocol='iscsi' name='$ISCSI_IQN/1'><host name='127.0.0.1' port='$ISCSI_PORT'/></source>
  <target dev='vdb' bus='virtio'/></disk>"
vs_guest_disk "$W/a.qcow2" >/dev/null
vs_guest_disk "$W/b.qcow2" >/dev/null
vs_guest_start "$A" "$W/a.qcow2" "$LUN_XML"
vs_guest_start "$B" "$W/b.qcow2"
vs_gexec "$A" 'mkdir -p /lun && mount /dev/vdb /lun && dd if=/dev/urandom of=/lun/f bs=64k count=16 2>/dev/null && sync && md5sum /lun/f' > "$W/f.md5"
SUM=$(cut -d' ' -f1 "$W/f.md5")
[ -n "$SUM" ] || vs_fail "no checksum of /lun/f"

# --- bad usage: exit 2, nothing done
set +e
vs_virtsnap quiesce --state-dir "$STATE" 2>"$W/u.err"; rc1=$?
vs_virtsnap unquiesce --state-dir "$STATE" '../etc' 2>>"$W/u.err"; rc2=$?
vs_virtsnap quiesce --state-dir "$STATE" --max-freeze 0 "$A" 2>>"$W/u.err"; rc3=$?
set -e
vs_assert_eq "$rc1 $rc2 $rc3" "2 2 2" "bad usage exits 2"
vs_assert_contains "$(cat "$W/u.err")" "is not a token" "a hostile token is refused"

# --- A and B quiesced together
vs_virtsnap quiesce --state-dir "$STATE" --max-freeze 60 --json "$A" "$B" > "$W/q.json"
cat "$W/q.json" >&2
T=$(jq -r .token "$W/q.json")
[[ "$T" =~ ^[a-z0-9-]+$ ]] || vs_fail "token '$T'"
vs_assert_eq "$(jq -r '[.domains[] | select(.frozen and .filesystems >= 1 and .frozen_at >= .freeze_started_at)] | length' "$W/q.json")" 2 \
  "both guests frozen"
vs_log "first freeze call to last frozen: $(jq '([.domains[].frozen_at] | max) - ([.domains[].freeze_started_at] | min)' "$W/q.json") ms"
vs_assert_eq "$(fsfreeze_status "$A") $(fsfreeze_status "$B")" "frozen frozen" "the guests say frozen"
vs_assert_eq "$(stat -c %a "$STATE/quiesce") $(stat -c %a "$STATE/quiesce/$T.json")" "700 600" "registry modes"

set +e
vs_virtsnap backup --repo "$REPO" --init --state-dir "$STATE" "$A" > /dev/null 2> "$W/b.err"; rc=$?
vs_virtsnap quiesce --state-dir "$STATE" "$A" > /dev/null 2> "$W/q2.err"; rc2=$?
set -e
vs_assert_eq "$rc" 1 "backup of a quiesced guest refused"
vs_assert_contains "$(cat "$W/b.err")" "quiesce (token $T)" "the backup names the token"
vs_assert_eq "$rc2" 1 "second quiesce refused"
vs_assert_contains "$(cat "$W/q2.err")" "already quiesced by token $T" "the second quiesce names the token"

eval "$("$VS_TARGETS_SRC/iscsi-target.sh" snapshot "$VS_ISCSI_DIR" 1 | grep '^ISCSI_SNAP_')"
vs_virtsnap unquiesce --state-dir "$STATE" "$T" > "$W/uq.out"
cat "$W/uq.out" >&2
vs_assert_contains "$(cat "$W/uq.out")" "deadline kept" "unquiesce keeps the deadline"
vs_assert_eq "$(fsfreeze_status "$A") $(fsfreeze_status "$B")" "thawed thawed" "the guests say thawed"
out=$(vs_virtsnap unquiesce --state-dir "$STATE" "$T")
vs_assert_contains "$out" "already thawed" "a second unquiesce is harmless"
vs_assert_eq "$(holding_tokens)" 0 "no token holds"

# --- the snapshot LUN, backed up as the disk of a shut-off domain, verifies
S=$P-snap
vs_domain_track "$S"
VS_VDA_XML="<disk type='network' device='disk'><driver name='qemu' type='raw'/>
  <source protocol='iscsi' name='$ISCSI_IQN/$ISCSI_SNAP_LUN'><host name='127.0.0.1' port='$ISCSI_PORT'/></source>
  <target dev='vda' bus='virtio'/><readonly/></disk>" vs_guest_xml "$S" /dev/null > "$W/s.xml"
virsh define "$W/s.xml" > /dev/null
vs_virtsnap backup --repo "$REPO" --state-dir "$STATE" --json "$S" > "$W/sb.json"
vs_assert_eq "$(jq -r '.domains[0].ok' "$W/sb.json")" true "backup of the snapshot LUN"
vs_virtsnap verify --repo "$REPO" > /dev/null
vs_virtsnap export --repo "$REPO" latest "$S" vda "$W/snap.raw"
fsck.ext4 -fn "$W/snap.raw" > "$W/fsck.out" 2>&1 || { cat "$W/fsck.out" >&2; vs_fail "the snapshot LUN is not clean"; }
vs_assert_eq "$(debugfs -R 'cat /f' "$W/snap.raw" 2>/dev/null | md5sum | cut -d' ' -f1)" "$SUM" \
  "the file synced before the quiesce, with its checksum"

# --- a forgotten quiesce: the guardian thaws at the deadline
T2=$(vs_virtsnap quiesce --state-dir "$STATE" --max-freeze 2 "$A" | head -1)
vs_assert_eq "$(fsfreeze_status "$A")" frozen "A frozen again"
sleep 3.5
vs_assert_eq "$(fsfreeze_status "$A")" thawed "the guardian thawed A by the deadline"
set +e
vs_virtsnap unquiesce --state-dir "$STATE" "$T2" > /dev/null 2> "$W/late.err"; rc=$?
set -e
vs_assert_eq "$rc" 1 "unquiesce after the guardian thawed"
vs_assert_contains "$(cat "$W/late.err")" "crash-consistent" "unquiesce says crash-consistent"
vs_assert_contains "$(cat "$STATE/guardian.log")" "freeze bound reached" "the guardian's log says why"

# --- a guardian killed while it holds: recover thaws and removes the token
T3=$(vs_virtsnap quiesce --state-dir "$STATE" "$A" | head -1)
gpid=$(sed -n 's/^pid=//p' "$VIRTSNAP_LOCK_DIR/$(virsh domuuid "$A" | head -1).lock")
[ -n "$gpid" ] && vs_alive "$gpid" || vs_fail "no guardian holds A's lock"
kill -9 "$gpid"
sleep 0.3
vs_virtsnap recover --state-dir "$STATE" > "$W/rec.out"
cat "$W/rec.out" >&2
vs_assert_contains "$(cat "$W/rec.out")" "settled quiesce token $T3" "recover settles the token"
vs_assert_eq "$(fsfreeze_status "$A")" thawed "recover thawed A"
[ ! -e "$STATE/quiesce/$T3.json" ] || vs_fail "the dead guardian's token was left"

# --- B's agent stopped: the group fails whole; with --suspend-fallback B is paused
vs_gexec "$B" '(sleep 1; killall qemu-ga) >/dev/null 2>&1 &' > /dev/null || true
sleep 2
set +e
vs_virtsnap quiesce --state-dir "$STATE" --agent-timeout 2 "$A" "$B" > /dev/null 2> "$W/f.err"; rc=$?
set -e
cat "$W/f.err" >&2
vs_assert_eq "$rc" 1 "quiesce with a silent agent fails"
vs_assert_contains "$(cat "$W/f.err")" "domain '$B'" "the failure names the guest"
vs_assert_eq "$(fsfreeze_status "$A")" thawed "nothing left frozen"
vs_assert_eq "$(holding_tokens)" 0 "no token left"
T4=$(vs_virtsnap quiesce --state-dir "$STATE" --agent-timeout 2 --suspend-fallback "$A" "$B" | tee "$W/sf.out" | head -1)
vs_assert_contains "$(cat "$W/sf.out")" "suspended $B" "the fallback says so"
vs_assert_eq "$(virsh domstate "$B" | head -1) $(fsfreeze_status "$A")" "paused frozen" "B paused, A frozen"
vs_virtsnap unquiesce --state-dir "$STATE" "$T4" > "$W/uq4.out"
vs_assert_contains "$(cat "$W/uq4.out")" "resumed $B" "unquiesce resumes B"
vs_assert_eq "$(virsh domstate "$B" | head -1) $(fsfreeze_status "$A")" "running thawed" "B running, A thawed"

# --- a paused guest forgotten: the guardian resumes it by the deadline
T5=$(vs_virtsnap quiesce --state-dir "$STATE" --agent-timeout 2 --suspend-fallback --max-freeze 2 "$B" | head -1)
vs_assert_eq "$(virsh domstate "$B" | head -1)" paused "B paused again"
sleep 3.5
vs_assert_eq "$(virsh domstate "$B" | head -1)" running "the guardian resumed B by the deadline"
set +e
vs_virtsnap unquiesce --state-dir "$STATE" "$T5" > /dev/null 2> "$W/late5.err"; rc=$?
set -e
vs_assert_eq "$rc" 1 "unquiesce after the guardian resumed"
vs_assert_contains "$(cat "$W/late5.err")" "crash-consistent" "and says crash-consistent"
sleep 0.5
vs_assert_eq "$(pgrep -fc "quiesce-guardian .*$STATE" || true)" 0 "every guardian ended"
vs_log "quiesce: all checks passed"
