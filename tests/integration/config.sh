#!/bin/bash
# config.sh -- virtsnap.conf, KVM_CMD_RETRY_COUNT and SC_AGENT_TIMEOUT on one real guest: a
# backup driven by a configuration file alone (the repository, the state directory and the
# VM from KVM_VM_MAPPING in the guide's format, no name on the command line), its definition
# written to KVM_VM_CONFIG_DIR; an unknown key and a mapping naming a VM that does not exist
# refused naming FILE:LINE (exit 2, nothing done); the persistent XML read failing twice
# (VIRTSNAP_FAULT=fail:domain-xml:2) and succeeding on the third try under
# KVM_CMD_RETRY_COUNT=3, said in the result, and failing the domain under
# KVM_CMD_RETRY_COUNT=1; SC_AGENT_TIMEOUT reached while the copy is held mid-copy
# (sleep:copy-chunk): the run unwinds as on an interrupt (guest running, thawed, on its
# own disk, no overlay, no backup written) and says the deadline was reached; a restore held
# mid-write stops at its --deadline (over SC_AGENT_TIMEOUT) leaving nothing.
set -euo pipefail
. "$VS_SOURCE_ROOT/tests/lib/harness.sh"

vs_test_open --libvirt cfg
BIN=${VIRTSNAP:-$VS_BUILD_ROOT/tools/virtsnap}

vs_guest_disk "$W/disk.qcow2" >/dev/null
vs_guest_start "$D" "$W/disk.qcow2"

mkdir -p "$W/xml"
CONF=$W/virtsnap.conf
cat > "$CONF" <<CONF
# virtsnap and Snap Creator keys
VIRTSNAP_REPO=$REPO
VIRTSNAP_STATE_DIR=$STATE

KVM_VM_MAPPING=$D:controller1:/vol/vol1/lun1,controller1:/vol/vol1/lun2
KVM_VM_CONFIG_DIR=$W/xml
APP_DEFINED_RESTORE=N
CONF
chmod 600 "$CONF"

backups() { vs_virtsnap --config "$CONF" list --json | jq length; }
freeze_status() { virsh qemu-agent-command "$D" '{"execute":"guest-fsfreeze-status"}' --timeout 5 2>/dev/null || echo silent; }
unwound() {       # WHAT: the guest runs, thawed, on its own disk, with no overlay of ours left
  vs_assert_eq "$(virsh domstate "$D" | head -1)" running "$1: the domain still runs"
  vs_assert_contains "$(freeze_status)" thawed "$1: the guest is thawed"
  vs_assert_eq "$(virsh domblklist "$D" --details | awk '$3 == "vda" {print $4}')" "$W/disk.qcow2" \
    "$1: the domain is on its original disk"
  vs_assert_eq "$(ls -A "$W" | grep -c '\.virtsnap-' || true)" 0 "$1: no overlay left beside the disk"
  vs_assert_eq "$(ls -A "$STATE/overlays" 2>/dev/null | wc -l)" 0 "$1: no overlay left in the state dir"
  vs_assert_eq "$(ls -A "$STATE/journal" 2>/dev/null | wc -l)" 0 "$1: no journal left"
}
run() {           # NAME ARGS...: virtsnap ARGS (with the environment given), status in $rc
  local name=$1; shift
  rc=0
  "$@" > "$W/$name.out" 2> "$W/$name.err" || rc=$?
  sed "s/^/  $name: /" "$W/$name.err" >&2
}

# --- a round trip driven by the file: no repository, state dir or VM on the command line ----
vs_virtsnap --config "$CONF" init
vs_virtsnap --config "$CONF" backup --json > "$W/b1.json"
vs_assert_eq "$(jq -r '.domains | map(.name + "," + (.ok | tostring) + "," + .consistency) | join(";")' "$W/b1.json")" \
  "$D,true,quiesced" "backup from the configuration: the mapping's VM, quiesced"
vs_assert_eq "$(vs_virtsnap --config "$CONF" list --json | jq -r '.[0].domains[0].name')" "$D" \
  "list from the configuration's repository"
vs_assert_eq "$(stat -c %a "$W/xml/$D.xml")" 600 "KVM_VM_CONFIG_DIR: the definition written 0600"
vs_assert_contains "$(cat "$W/xml/$D.xml")" "<name>$D</name>" "KVM_VM_CONFIG_DIR: the domain's definition"
[ -d "$STATE/journal" ] || vs_fail "the configuration's VIRTSNAP_STATE_DIR was not used ($STATE/journal missing)"

# --- refusals naming the line, before anything is done ----------------------------------
cp "$CONF" "$W/bad.conf"
echo "KVM_VM_MAPING=$D:c:/vol/x" >> "$W/bad.conf"
line=$(wc -l < "$W/bad.conf")
run unknown "$BIN" --config "$W/bad.conf" backup
vs_assert_eq "$rc" 2 "unknown key: exit status"
vs_assert_contains "$(cat "$W/unknown.err")" "config: $W/bad.conf:$line: unknown key 'KVM_VM_MAPING'" \
  "unknown key: names the file, the line and the key"

grep -v KVM_VM_MAPPING "$CONF" > "$W/missing.conf"
echo "KVM_VM_MAPPING=$D:c:/vol/a;vst-cfg-gone-$$:c:/vol/b" >> "$W/missing.conf"
line=$(wc -l < "$W/missing.conf")
chmod 600 "$W/bad.conf" "$W/missing.conf"
run missing "$BIN" --config "$W/missing.conf" backup
vs_assert_eq "$rc" 2 "mapping naming a missing VM: exit status"
vs_assert_contains "$(cat "$W/missing.err")" \
  "config: $W/missing.conf:$line: KVM_VM_MAPPING: VM 'vst-cfg-gone-$$' does not exist" \
  "mapping naming a missing VM: names the file, the line and the VM"
vs_assert_eq "$(backups)" 1 "refusals: no backup written"

# --- KVM_CMD_RETRY_COUNT: a libvirt step failing twice -------------------------------------
run retry3 env VIRTSNAP_FAULT=fail:domain-xml:2 KVM_CMD_RETRY_COUNT=3 "$BIN" --config "$CONF" backup --json
vs_assert_eq "$rc" 0 "failing twice under KVM_CMD_RETRY_COUNT=3: exit status"
vs_assert_eq "$(jq -r '.domains[0].ok' "$W/retry3.out")" true "failing twice under KVM_CMD_RETRY_COUNT=3: backed up"
vs_assert_contains "$(jq -r '.domains[0].note' "$W/retry3.out")" \
  "reading the persistent XML: retried 2 time(s) (KVM_CMD_RETRY_COUNT=3)" "the retries are noted"
vs_assert_eq "$(backups)" 2 "failing twice under KVM_CMD_RETRY_COUNT=3: the backup is listed"

run retry1 env VIRTSNAP_FAULT=fail:domain-xml:2 KVM_CMD_RETRY_COUNT=1 "$BIN" --config "$CONF" backup
vs_assert_eq "$rc" 1 "failing twice under KVM_CMD_RETRY_COUNT=1: exit status"
vs_assert_contains "$(cat "$W/retry1.err")" "injected fault domain-xml" "KVM_CMD_RETRY_COUNT=1: the step's error"
vs_assert_eq "$(backups)" 2 "KVM_CMD_RETRY_COUNT=1: no backup written"
unwound "KVM_CMD_RETRY_COUNT=1"

# --- SC_AGENT_TIMEOUT reached mid-copy ------------------------------------------------------
rm -f "$W/mark"
t0=$(date +%s)
run deadline env SC_AGENT_TIMEOUT=8 VIRTSNAP_FAULT=sleep:copy-chunk:120000 VIRTSNAP_FAULT_MARK="$W/mark" \
  "$BIN" --config "$CONF" backup
t1=$(date +%s)
[ -e "$W/mark" ] || vs_fail "SC_AGENT_TIMEOUT: the run never reached the copy"
vs_assert_eq "$rc" 1 "SC_AGENT_TIMEOUT: exit status"
vs_assert_contains "$(cat "$W/deadline.err")" "deadline (SC_AGENT_TIMEOUT=8 s, reached)" \
  "SC_AGENT_TIMEOUT: says the deadline was reached"
[ $((t1 - t0)) -lt 60 ] || vs_fail "SC_AGENT_TIMEOUT=8: the run took $((t1 - t0)) s"
vs_assert_eq "$(backups)" 2 "SC_AGENT_TIMEOUT: no backup written"
unwound "SC_AGENT_TIMEOUT"

# --- the same deadline bounds a restore: held mid-write, --deadline over the environment ------
mkdir -p "$W/t"
vs_domain_track "$D-dl"
rm -f "$W/mark"
run restore-deadline env SC_AGENT_TIMEOUT=600 VIRTSNAP_FAULT=sleep:export-writing:120000 \
  VIRTSNAP_FAULT_MARK="$W/mark" "$BIN" --config "$CONF" restore --deadline 3 --as "$D-dl" --target-dir "$W/t" "$D"
[ -e "$W/mark" ] || vs_fail "restore --deadline: the restore never reached its write"
vs_assert_eq "$rc" 1 "restore --deadline: exit status"
vs_assert_contains "$(cat "$W/restore-deadline.err")" "deadline (SC_AGENT_TIMEOUT=3 s, reached)" \
  "restore --deadline: the option's deadline, reached"
vs_assert_eq "$(ls -A "$W/t" | wc -l)" 0 "restore --deadline: nothing left in the target directory"
