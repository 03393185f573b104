#!/bin/bash
# sc-plugin.sh -- virtsnap as Snap Creator's native plug-in, driven the way the framework
# drives it (one process per operation, parameters in the environment, SC_* lines out). Two
# guests: A on a LUN of the loopback iSCSI target (its writer appending records), B on a
# local qcow2. -describe prints exactly the golden answer; an operation not implemented
# exits 99; -scdump lists the versions and both VMs; -discover maps A's disk to the portal
# and IQN/LUN and offers the new KVM_VM_MAPPING, which `discover --mapping=sc` prints too
# (and, with the tgt hook configured, in the hook's words via `locate`); `discover
# --mapping=sc --update-config` rewrites only that line of a configuration file. With that
# mapping from virtsnap.conf, `-quiesce` freezes both guests at once (both report frozen),
# the target snapshots A's LUN meanwhile, `-unquiesce` thaws both and exits 0, and the
# snapshot LUN is a consistent file system with valid records; when the guardian thaws
# first (VIRTSNAP_MAX_FREEZE=1), `-unquiesce` exits 1 saying the snapshot is
# crash-consistent only. Last, B is backed up, undefined and its disk deleted; `-restore`
# with KVM_RESTORE_VM_LIST brings it back (same UUID, running, the file written before the
# backup there, its definition in KVM_VM_CONFIG_DIR).
set -euo pipefail
. "$VS_SOURCE_ROOT/tests/lib/harness.sh"

vs_test_open --libvirt
A=vst-sca-$$ B=vst-scb-$$
plugin() { vs_virtsnap sc-plugin --state-dir "$STATE" "$@"; }   # the environment is the caller's
fsfreeze() { virsh qemu-agent-command "$1" '{"execute":"guest-fsfreeze-status"}' --timeout 5; }
boot() {      # NAME XML: defined and started; vs_wait_agent waits for it (the two boot at once)
  vs_domain_track "$1"
  rm -f "$(vs_console_log "$1")"
  virsh define "$2" >/dev/null
  virsh start "$1" >/dev/null
}

# --- A on a LUN, B on a local file, booting together ------------------------------------------
mkdir -p "$W/iscsi"
"$VS_GUEST_SRC/mkdisk.sh" "$W/iscsi/lun1.img" 128M
ISCSI_SIZE=128M vs_iscsi_start
host=${ISCSI_PORTAL%:*} port=${ISCSI_PORTAL##*:}
VS_VDA_XML="<disk type='network' device='disk'><driver name='qemu' type='raw'/>
  <source protocol='iscsi' name='$ISCSI_IQN/1'><host name='$host' port='$port'/></source>
  <target dev='vda' bus='virtio'/></disk>" vs_guest_xml "$A" "$W/unused.img" > "$W/a.xml"
vs_guest_disk "$W/b.qcow2" >/dev/null
vs_guest_xml "$B" "$W/b.qcow2" > "$W/b.xml"
boot "$A" "$W/a.xml"
boot "$B" "$W/b.xml"

# --- what needs no guest: -describe, an operation not implemented, bad usage ------------------
plugin -describe > "$W/describe.out"
diff -u "$VS_SOURCE_ROOT/tests/unit/sc-golden/describe.txt" "$W/describe.out" >&2 ||
  vs_fail "-describe differs from the golden answer"
set +e
plugin -clone_pre > "$W/clone.out"; rc=$?
set -e
vs_assert_eq "$rc" 99 "-clone_pre: not implemented"
vs_assert_contains "$(cat "$W/clone.out")" "SC_MSG#INFO#" "-clone_pre says so"
set +e
plugin -quiesce -unquiesce 2> "$W/two.err"; rc=$?
set -e
vs_assert_eq "$rc" 2 "two operations: usage"

# READY: /data mounted and the writer's first records written (the agent may answer before)
for d in "$A" "$B"; do
  vs_wait_ready "$d" "$(vs_console_log "$d")" 120 || vs_fail "$d did not boot"
  vs_wait_agent "$d" 120
done

# --- -discover: the mapping the framework stores, and discover --mapping=sc ------------------
KVM_VM_MAPPING="$A:x:y;$B:x:y;" plugin -discover > "$W/discover.out"
cat "$W/discover.out" >&2
grep -qxF "SC_DISCOVER#DATA#DISCOVERED#$ISCSI_PORTAL#$ISCSI_IQN/1" "$W/discover.out" ||
  vs_fail "-discover does not map $A's disk to its portal and IQN/LUN"
grep -qxF "SC_DISCOVER#DATA#DISCOVERED#localhost#$W/b.qcow2" "$W/discover.out" || vs_fail "-discover: $B's disk"
grep -qxF "SC_DISCOVER#DATA#RESULT#0" "$W/discover.out" || vs_fail "-discover: RESULT not 0"
MAP=$(sed -n 's/^SC_DISCOVER#ENV#KVM_VM_MAPPING#//p' "$W/discover.out")
vs_assert_eq "$MAP" "$A:$ISCSI_PORTAL:$ISCSI_IQN/1;$B:localhost:$W/b.qcow2;" "the new KVM_VM_MAPPING"
vs_assert_eq "$(vs_virtsnap discover --mapping=sc "$A" "$B")" "$MAP" "discover --mapping=sc"
KVM_VM_MAPPING=$MAP plugin -scdump > "$W/scdump.out"
grep -qxF "SC_DUMP#VM#$A#state=running agent=responding disks=1 backed-up=1" "$W/scdump.out" ||
  vs_fail "-scdump: $(cat "$W/scdump.out")"
grep -q "^SC_DUMP#libvirt#[0-9]" "$W/scdump.out" || vs_fail "-scdump: no libvirt version"
# The tgt hook configured: locate names the target's host and the LUN's backing file for A;
# B's file disk it cannot say (exit 3), so B keeps localhost and its path.
printf 'TARGET_DIR=%s\nTARGET_SCRIPT=%s\n' "$VS_ISCSI_DIR" "$VS_TARGETS_SRC/iscsi-target.sh" > "$W/hook.conf"
printf '[defaults]\nhook=%s\nhook-config=%s\n' "$VS_SOURCE_ROOT/tests/hooks/iscsi-tgt-hook.sh" "$W/hook.conf" \
  > "$W/snapshots.conf"
chmod 600 "$W/hook.conf" "$W/snapshots.conf"
vs_assert_eq "$(vs_virtsnap discover --mapping=sc --snapshot-config "$W/snapshots.conf" "$A" "$B")" \
  "$A:$host:$VS_ISCSI_DIR/lun1.img;$B:localhost:$W/b.qcow2;" "discover --mapping=sc with the hook's locate"
# --update-config: that line alone rewritten, the mode kept
printf '# Snap Creator KVM profile\nAPP_NAME=kvm\r\nKVM_VM_MAPPING = old:c:/v;\n\n# end' > "$W/kvm.conf"
chmod 640 "$W/kvm.conf"
vs_virtsnap discover --mapping=sc --update-config "$W/kvm.conf" "$A" "$B"
printf '# Snap Creator KVM profile\nAPP_NAME=kvm\r\nKVM_VM_MAPPING = %s\n\n# end' "$MAP" > "$W/kvm.want"
cmp "$W/kvm.conf" "$W/kvm.want" || vs_fail "--update-config: $(cat -A "$W/kvm.conf")"
vs_assert_eq "$(stat -c %a "$W/kvm.conf")" 640 "--update-config keeps the mode"

# --- -quiesce: both frozen at once; the LUN's snapshot meanwhile; -unquiesce -------------------
# The mapping from a configuration file this time, written there by --update-config.
printf '# virtsnap for Snap Creator\nKVM_VM_MAPPING=old:c:/v;\nKVM_CMD_RETRY_COUNT=3\n' > "$W/virtsnap.conf"
chmod 600 "$W/virtsnap.conf"
vs_virtsnap discover --mapping=sc --update-config "$W/virtsnap.conf" "$A" "$B"
plugin() { vs_virtsnap --config "$W/virtsnap.conf" sc-plugin --state-dir "$STATE" "$@"; }
plugin -quiesce > "$W/quiesce.out"
cat "$W/quiesce.out" >&2
vs_assert_contains "$(fsfreeze "$A")" frozen "$A frozen"
vs_assert_contains "$(fsfreeze "$B")" frozen "$B frozen"
vs_assert_contains "$(cat "$W/quiesce.out")" "2 VMs quiesced together" "-quiesce says both together"
vs_assert_eq "$(stat -c %a "$STATE/sc-plugin/token")" 600 "the token kept, private"
snap=$("$VS_TARGETS_SRC/iscsi-target.sh" snapshot "$VS_ISCSI_DIR" 1)
SLUN=$(sed -n 's/^ISCSI_SNAP_LUN=//p' <<<"$snap")
plugin -unquiesce > "$W/unquiesce.out"
cat "$W/unquiesce.out" >&2
vs_assert_contains "$(fsfreeze "$A")" thawed "$A thawed"
vs_assert_contains "$(fsfreeze "$B")" thawed "$B thawed"
[ ! -e "$STATE/sc-plugin/token" ] || vs_fail "the token is still kept after -unquiesce"
"$VS_GUEST_SRC/verify-backup.sh" "$VS_ISCSI_DIR/snap-1-$SLUN.img" >&2 ||
  vs_fail "the LUN snapshot taken while quiesced is not consistent"
vs_assert_contains "$(plugin -unquiesce)" "nothing is quiesced" "a second -unquiesce: harmless"
# The guardian thaws first (the deadline passed before -unquiesce): -unquiesce fails, saying
# that the snapshot taken meanwhile is crash-consistent only.
VIRTSNAP_MAX_FREEZE=1 plugin -quiesce > "$W/quiesce2.out"
for _ in $(seq 100); do
  case "$(fsfreeze "$A") $(fsfreeze "$B")" in *frozen*) sleep 0.1 ;; *) break ;; esac
done
set +e
plugin -unquiesce > "$W/late.out"; rc=$?
set -e
cat "$W/late.out" >&2
vs_assert_eq "$rc" 1 "-unquiesce after the guardian thawed"
vs_assert_contains "$(cat "$W/late.out")" "crash-consistent only" "-unquiesce says why"
[ ! -e "$STATE/sc-plugin/token" ] || vs_fail "the token is still kept after the guardian thawed"
plugin() { vs_virtsnap sc-plugin --state-dir "$STATE" "$@"; }

# --- -restore: B, deleted after its backup, comes back ----------------------------------------
vs_gexec "$B" 'echo sc-plugin-marker > /data/sc-marker && sync'
uuid=$(virsh domuuid "$B" | sed -n 1p)
vs_virtsnap backup --repo "$REPO" --init --state-dir "$STATE" --json "$B" > "$W/backup.json"
[ "$(jq -r '.domains[0].ok' "$W/backup.json")" = true ] || vs_fail "backup of $B: $(cat "$W/backup.json")"
virsh destroy "$B" >/dev/null
virsh undefine "$B" >/dev/null
rm -f "$W/b.qcow2"
mkdir -p "$W/cfg"
KVM_RESTORE_VM_LIST=$B VIRTSNAP_REPO=$REPO APP_DEFINED_RESTORE=Y KVM_VM_CONFIG_DIR=$W/cfg \
  plugin -restore > "$W/restore.out"
cat "$W/restore.out" >&2
vs_assert_contains "$(cat "$W/restore.out")" "SC_MSG#INFO#" "-restore reports"
vs_assert_eq "$(virsh domuuid "$B" | sed -n 1p)" "$uuid" "$B back under its UUID"
vs_assert_eq "$(virsh domstate "$B" | head -1)" running "$B running"
vs_assert_contains "$(cat "$W/cfg/$B.xml")" "<name>$B</name>" "the definition in KVM_VM_CONFIG_DIR"
vs_wait_agent "$B" 120
vs_assert_eq "$(vs_gexec "$B" 'cat /data/sc-marker')" sc-plugin-marker "$B's data restored"
vs_log "sc-plugin: all checks passed"
