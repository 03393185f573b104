#!/bin/bash
# backup-remote.sh -- a backup host off the hypervisor: the guest runs on a second libvirt
# host (tests/lib/second-host.sh: its own namespaces, qemu+tcp://10.213.0.2/system),
# virtsnap runs here with -c that URI. `backup --mode=begin` (a full, then an incremental
# after the guest wrote) reads the pull job's NBD export over TCP (data_path nbd-tcp), the
# repository verifies, the incremental's export is a consistent copy, the next incremental's
# base is the first. While the job runs, the hypervisor's QEMU holds no file of this host's
# state directory or repository (its open files, its command line and the job XML name
# none), and its scratch file is on the hypervisor (beside the disk image, removed by
# libvirt afterwards). An overlay-mode backup (the default), a push job and a restore are
# refused (exit 2) naming what to use instead, and so is a shut-off domain (exit 1).
set -euo pipefail
. "$VS_SOURCE_ROOT/tests/lib/harness.sh"
. "$VS_SOURCE_ROOT/tests/lib/second-host.sh"

vs_test_open --libvirt remote
for c in jq qemu-img pgrep; do command -v $c >/dev/null || vs_skip "no $c"; done
vs_second_host_start
SECOND=$VS_H2_URI

# The guest, persistent, on the second host (its private /etc/libvirt is in the work dir); its disk in the work dir (one file system for
# both "hosts" here, which is why the checks below look at what QEMU opens, not at paths).
vs_guest_disk "$W/disk.qcow2" >/dev/null
vs_guest_xml "$D" "$W/disk.qcow2" > "$W/dom.xml"
vs_h2_virsh -q define "$W/dom.xml" >/dev/null
vs_h2_virsh -q start "$D" >/dev/null
end=$(( $(date +%s) + 120 ))
until grep -q GA-GUEST-READY "$(vs_console_log "$D")" 2>/dev/null; do
  [ "$(date +%s)" -lt "$end" ] || vs_fail "$D did not boot on the second host"
  sleep 0.3
done
vs_h2_wait_agent "$D" 60
vs_log "$D runs on the second host"
v2() { vs_h2_virsh -q "$@"; }
QPID=$(pgrep -f -- "-name guest=$D," | head -1)
[ -n "$QPID" ] || vs_fail "no QEMU process of $D"
[ "$(readlink /proc/$QPID/ns/net)" != "$(readlink /proc/self/ns/net)" ] ||
  vs_fail "QEMU of $D runs in this host's network namespace: not the second host's"

rb() { vs_virtsnap -c "$SECOND" backup --repo "$REPO" --state-dir "$STATE" "$@"; }

# --- refusals: what needs the hypervisor's files here -----------------------------------
refused() {   # refused WHAT NEEDLE ARGS...: exit 2, the message naming NEEDLE and what to use
  local what=$1 needle=$2 rc=0 out; shift 2
  out=$("$@" 2>&1) || rc=$?
  vs_assert_eq "$rc" 2 "$what: exit code"
  vs_assert_contains "$out" "$needle" "$what"
  vs_assert_contains "$out" "on the hypervisor" "$what: what to do instead"
}
refused "overlay backup (the default)" "use --mode=begin" rb --init "$D"
refused "push job" "--push" rb --init --mode=begin --push "$D"
refused "restore" "cannot restore" vs_virtsnap -c "$SECOND" restore --repo "$REPO" "$D"
[ ! -e "$REPO" ] || vs_fail "a refused run created the repository"

# --- a full backup, inspected while its job runs ------------------------------------------
vs_log "full backup, the job held open 4 s before its end"
VIRTSNAP_FAULT=sleep:before-commit:4000 "${VIRTSNAP:-$VS_BUILD_ROOT/tools/virtsnap}" -c "$SECOND" \
  backup --repo "$REPO" --init --state-dir "$STATE" --mode=begin --json "$D" > "$W/b1.json" 2> "$W/b1.err" &
BPID=$!
end=$(( $(date +%s) + 60 ))
until v2 domjobinfo "$D" 2>/dev/null | grep -q 'Backup'; do
  vs_alive $BPID || { cat "$W/b1.err" >&2; vs_fail "the backup ended before its job was seen"; }
  [ "$(date +%s)" -lt "$end" ] || vs_fail "no backup job on the second host"
  sleep 0.1
done
FILES=$(find /proc/$QPID/fd -mindepth 1 -maxdepth 1 -printf '%l\n' 2>/dev/null | sort -u)
CMDLINE=$(tr '\0' ' ' < /proc/$QPID/cmdline)
JOBXML=$(v2 backup-dumpxml "$D")
wait $BPID || { cat "$W/b1.err" >&2; vs_fail "remote full backup failed"; }
for where in "$STATE" "$REPO" "$(realpath -m "$STATE")" "$(realpath -m "$REPO")"; do
  case "$FILES" in *"$where"*) vs_fail "QEMU on the hypervisor holds $where open:
$FILES";; esac
  case "$CMDLINE $JOBXML" in *"$where"*) vs_fail "QEMU's command line or the job XML names $where";; esac
done
vs_log "ok: QEMU's open files, command line and job XML name neither $STATE nor $REPO"
vs_assert_contains "$JOBXML" "transport='tcp'" "the running job's <server>"
vs_assert_contains "$JOBXML" "name='10.213.0.2'" "the running job's <server>"
# The scratch file is beside the disk image (the hypervisor's storage), named by the checkpoint.
scratch=$(printf '%s\n' "$FILES" | grep -F "$(realpath "$W/disk.qcow2")." || true)
[ -n "$scratch" ] || vs_fail "no scratch file beside the disk open in QEMU:
$FILES"
vs_log "ok: the scratch file is on the hypervisor, beside the disk: $scratch"

f() { jq -r ".domains[0] | $2" "$1"; }
vs_assert_eq "$(f "$W/b1.json" '[.ok, .mode, .level, .disks[0].data_path] | join(",")')" \
  "true,begin,full,nbd-tcp" "remote full backup"
ID1=$(jq -r .id "$W/b1.json")
vs_assert_eq "$(find "$STATE" -path '*scratch*' -type f 2>/dev/null | wc -l)" 0 "scratch files in the state directory"
vs_assert_eq "$(ls "$STATE/journal" 2>/dev/null | wc -l)" 0 "journals left"
vs_assert_eq "$(ls "$W" | grep -c '^disk\.qcow2\.' || true)" 0 "libvirt's scratch files left beside the disk"
vs_assert_eq "$(v2 checkpoint-list "$D" --name | sed '/^$/d' | wc -l)" 1 "checkpoints on the second host"

# --- the guest writes, an incremental -------------------------------------------------------
vs_h2_gexec "$D" 'dd if=/dev/urandom of=/data/remote1 bs=1M count=16 conv=fsync 2>/dev/null' >/dev/null
rb --mode=begin --json "$D" > "$W/b2.json"
vs_assert_eq "$(f "$W/b2.json" '[.ok, .level, .base, .disks[0].data_path, .consistency] | join(",")')" \
  "true,inc,$ID1,nbd-tcp,quiesced" "remote incremental"
ID2=$(jq -r .id "$W/b2.json")
read2=$(f "$W/b2.json" '.disks[0].bytes_read')
[ "$read2" -lt $((256 * 1024 * 1024)) ] || vs_fail "the incremental read $read2 bytes of a 1 GiB disk"
vs_log "ok: the incremental read $read2 bytes"

vs_virtsnap verify --repo "$REPO" >/dev/null || vs_fail "virtsnap verify failed"
vs_log "ok: the repository verifies"
vs_virtsnap export --repo "$REPO" "$ID2" "$D" vda "$W/inc.qcow2"
"$VS_GUEST_SRC/verify-backup.sh" "$W/inc.qcow2" >/dev/null || vs_fail "the incremental's export is not a consistent copy"
vs_log "ok: the incremental's export ($ID2) is a consistent copy"

# --- shut off, its disk files are the hypervisor's: refused, naming what to do ---------------
v2 destroy "$D" >/dev/null
rc=0; out=$(rb --mode=auto "$D" 2>&1) || rc=$?
vs_assert_eq "$rc" 1 "backup of the shut-off domain: exit code"
vs_assert_contains "$out" "is not running on 10.213.0.2" "backup of the shut-off domain"
vs_assert_contains "$out" "start it, or run virtsnap on the hypervisor" "backup of the shut-off domain"
vs_log "PASS"
