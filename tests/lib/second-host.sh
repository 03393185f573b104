# tests/lib/second-host.sh -- sourced (bash) after harness.sh by the two-host tests
# (migration, a backup host off the hypervisor): a second libvirt "host" on this machine,
# tests/targets/second-host.sh (the project's copy of ../shared/targets/second-host.sh): a
# libvirtd in its own mount, UTS and network namespace, reached over a veth pair at
# qemu+tcp://10.213.0.2/system. Both hosts see one file system outside /run, /etc/libvirt and
# /var/lib/libvirt, so a disk in the work dir is shared storage -- but libvirt calls a local
# file system unshared, hence the pitfalls this file takes care of (see the README there):
# migrations need VIR_MIGRATE_UNSAFE (`virtsnap migrate --unsafe`), the shared disk must not be
# relabelled (the source resets it to root:root after each migration otherwise) and is owned
# by libvirt-qemu, and a migration back to the main host needs --listen-address $VS_H2_MAIN_IP.
# The veth names and addresses are fixed, so one second host per machine: a lock serialises
# the tests that start one (held until the test's shell exits), like the NFS server's.
#
#   vs_second_host_start          start it (call directly, not in $(...)): exports VS_H2_URI,
#                                 VS_H2_DIR, VS_H2_MAIN_IP; stopped (its domains destroyed) on exit
#   vs_h2_disk_xml DISK           vda as a migratable shared disk (relabel='no'); chowns DISK
#   vs_h2_guest_start NAME DISK   vs_guest_start on the main host with that vda
#   vs_h2_virsh ARGS...           virsh on the second host
#   vs_h2_gexec NAME CMD          tests/guest/gexec.sh against the second host
#   vs_h2_domstate NAME           the domain's state there ("" when it is not there)
#   vs_h2_wait_agent NAME [SECS]  until its agent answers there

[ -z "${_VS_H2_LOADED:-}" ] || return 0
_VS_H2_LOADED=1
VS_H2_SCRIPT=$VS_TARGETS_SRC/second-host.sh
VS_H2_MAIN_IP=${SH2_HIP:-10.213.0.1}

vs_second_host_start() {
  local dir out
  vs_require_root
  command -v unshare >/dev/null && command -v ip >/dev/null || vs_skip "needs unshare and ip (util-linux, iproute2)"
  [ -n "${LIBVIRT_DEFAULT_URI:-}" ] || vs_libvirt_up
  mkdir -p /run/lock
  exec {_VS_H2_LOCK_FD}>/run/lock/virtsnap-tests-second-host.lock
  if ! flock -n "$_VS_H2_LOCK_FD"; then
    vs_log "waiting for another test's second host (/run/lock/virtsnap-tests-second-host.lock)"
    flock -w 600 "$_VS_H2_LOCK_FD" || vs_fail "second-host lock still held after 600 s"
  fi
  # under the lock, a veth of ours can only be a dead test's whose work dir is gone
  ip link show "${SH2_HIF:-sh2-h}" >/dev/null 2>&1 &&
    vs_fail "veth ${SH2_HIF:-sh2-h} exists but no live test owns a second host: stop its libvirtd (see 'ip link show ${SH2_HIF:-sh2-h}') and delete the link"
  dir=$(vs_workdir)/h2
  vs_on_exit "$VS_H2_SCRIPT" stop "$dir"
  out=$("$VS_H2_SCRIPT" start "$dir" 2>"$(vs_workdir)/h2-start.log") ||
    vs_fail "second-host.sh start: $(cat "$(vs_workdir)/h2-start.log")"
  export VS_H2_URI=$out VS_H2_DIR=$dir VS_H2_MAIN_IP
  vs_log "second host up: $VS_H2_URI ($(tail -n 1 "$(vs_workdir)/h2-start.log"))"
}

vs_h2_disk_xml() {
  local disk fmt
  disk=$(realpath -m "$1")
  case "$disk" in *.qcow2) fmt=qcow2;; *) fmt=raw;; esac
  chown libvirt-qemu:libvirt-qemu "$disk" || vs_fail "chown libvirt-qemu $disk"
  echo "<disk type='file' device='disk'><driver name='qemu' type='$fmt'/><source file='$disk'><seclabel model='dac' relabel='no'/></source><target dev='vda' bus='virtio'/></disk>"
}

vs_h2_guest_start() {
  local vda
  vda=$(vs_h2_disk_xml "$2")
  VS_VDA_XML=$vda vs_guest_start "$1" "$2" "${3:-}"
}

vs_h2_virsh() { timeout 120 virsh -c "$VS_H2_URI" "$@"; }
vs_h2_gexec() { LIBVIRT_DEFAULT_URI=$VS_H2_URI "$VS_GUEST_SRC/gexec.sh" "$@"; }
vs_h2_domstate() { timeout 15 virsh -c "$VS_H2_URI" domstate "$1" 2>/dev/null | sed -n 1p || true; }

vs_h2_wait_agent() {
  local name=$1 end=$(( $(date +%s) + ${2:-60} ))
  until timeout 20 virsh -c "$VS_H2_URI" qemu-agent-command --timeout 5 "$name" '{"execute":"guest-ping"}' >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$end" ] || vs_fail "agent of $name on the second host did not answer in ${2:-60}s"
    sleep 0.2
  done
}
