# tests/lib/daemons.sh -- sourced (bash) by scripts/test.sh, scripts/demo.sh, scripts/deps.sh
# and tests/lib/harness.sh. These machines have no systemd, so nothing starts libvirtd or
# virtlogd for us; qemu:///system needs both (libvirtd's default stdio_handler="logd" makes
# every domain start fail with "Failed to connect socket to '/run/libvirt/virtlogd-sock'"
# when virtlogd is missing). Daemons started here are left running on purpose: they are
# shared by every test, the demo and the other engineers on the machine.
#
#   vs_daemons_up          start virtlogd/libvirtd if not running, wait until qemu:///system answers
#   vs_libvirtd_restart    graceful restart (only when no domain runs), e.g. to load a newly
#                          installed storage driver
#   vs_iscsi_direct_ok     does the running libvirtd support <pool type='iscsi-direct'>?
#   vs_rbd_pool_ok         does it support <pool type='rbd'> (libvirt-daemon-driver-storage-rbd)?

VS_LIBVIRT_URI=qemu:///system

_vs_d_log() { echo "daemons: $*" >&2; }

# The daemons outlive the caller and serve everyone, so they get nothing of it: no stdio
# (meson would wait for EOF on its pipes), no other inherited fd (a test's lock file would
# stay locked for ever), no environment (MALLOC_PERTURB_, LIBVIRT_DEFAULT_URI, VS_*...).
_vs_d_spawn() {
  (
    for p in /proc/$BASHPID/fd/*; do
      n=${p##*/}
      [ "$n" -gt 2 ] 2>/dev/null && eval "exec $n>&-"
    done 2>/dev/null
    exec env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 setsid "$@" </dev/null >/dev/null 2>&1
  )
}

vs_libvirt_answers() { timeout 10 virsh -c "$VS_LIBVIRT_URI" uri >/dev/null 2>&1; }

vs_daemons_up() {
  local i
  if ! pgrep -x virtlogd >/dev/null; then
    _vs_d_log "starting virtlogd"
    _vs_d_spawn virtlogd -d || { _vs_d_log "virtlogd -d failed"; return 1; }
  fi
  if ! pgrep -x libvirtd >/dev/null; then
    _vs_d_log "starting libvirtd"
    _vs_d_spawn libvirtd -d || { _vs_d_log "libvirtd -d failed"; return 1; }
  fi
  for i in $(seq 1 60); do           # 30 s: a cold libvirtd probes QEMU capabilities first
    vs_libvirt_answers && return 0
    sleep 0.5
  done
  _vs_d_log "libvirtd does not answer on $VS_LIBVIRT_URI after 30 s"
  return 1
}

vs_iscsi_direct_ok() {
  # no pipe into grep -q: under pipefail virsh's SIGPIPE would make it "fail"
  local caps
  caps=$(timeout 20 virsh -c "$VS_LIBVIRT_URI" pool-capabilities 2>/dev/null) || return 1
  [[ "$caps" == *"<pool type='iscsi-direct' supported='yes'>"* ]]
}

vs_rbd_pool_ok() {
  local caps
  caps=$(timeout 20 virsh -c "$VS_LIBVIRT_URI" pool-capabilities 2>/dev/null) || return 1
  [[ "$caps" == *"<pool type='rbd' supported='yes'>"* ]]
}

# libvirtd loads its storage backends once, at start: a driver installed later stays
# "supported='no'" until a restart. Restarting under running domains would be survivable
# for libvirtd itself but not for tests in flight (their jobs/events are lost), so refuse.
vs_libvirtd_restart() {
  local pid running
  pid=$(pgrep -x libvirtd | sed -n 1p)
  if [ -n "$pid" ]; then
    running=$(timeout 20 virsh -c "$VS_LIBVIRT_URI" list --name 2>/dev/null | grep -c . || true)
    if [ "${running:-0}" != 0 ]; then
      _vs_d_log "WARNING: not restarting libvirtd: $running domain(s) running"
      return 1
    fi
    _vs_d_log "restarting libvirtd (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
    if [ -d "/proc/$pid" ]; then _vs_d_log "libvirtd $pid did not exit after 10 s"; return 1; fi
  fi
  vs_daemons_up
}
