# tests/lib/harness.sh -- sourced by every integration test (bash):
#     . "$VS_SOURCE_ROOT/tests/lib/harness.sh"     (or a path relative to the test script)
# Integration tests drive a real libvirtd, real QEMU guests (TCG here) and real iSCSI/NFS
# targets as root; this file gives them one way to create such objects so that every one
# of them is removed again, on success, failure, timeout (SIGTERM from meson) or Ctrl-C.
#
# Rules for tests: name every libvirt object "vst-..." (vs_sweep removes leftovers by that
# prefix); track an object (vs_domain_track / vs_pool_track) BEFORE creating it; never set
# your own EXIT/INT/TERM trap (use vs_on_exit); exit 77 = skipped. Call vs_nfs_start,
# vs_iscsi_start and vs_guest_start directly, not in $(...): they export variables.
#
# Cleanup state lives in files in the work dir, not in shell variables, because tests call
# helpers in command substitutions (dev=$(vs_loopdev ...)), i.e. in subshells whose variables
# and traps die with them. Work dir: /tmp/virtsnap-tests/<test>.<pid>; its .owner file
# (pid + start time) tells the sweeper of a later run whether the owner still lives, so
# tests run by other people or other build dirs at the same time are left alone.
#
# Functions (details above each):
#   opening    vs_test_open [--libvirt | --root] [PREFIX]: W, REPO, STATE and D=vst-PREFIX-$$
#   messages   vs_log MSG | vs_skip MSG (exit 77) | vs_fail MSG (exit 1) | vs_require_root
#              vs_assert_eq ACTUAL EXPECTED WHAT | vs_assert_contains HAYSTACK NEEDLE WHAT
#   cleanup    vs_on_exit CMD... | vs_cleanup_now | vs_workdir
#   libvirt    vs_libvirt_up | vs_domain_track NAME | vs_pool_track NAME | vs_define_pool XML
#   guests     vs_guest_prepare | vs_guest_disk OUT [SIZE] | vs_guest_xml NAME DISK [EXTRA]
#              vs_guest_start NAME DISK [EXTRA] | vs_wait_agent NAME [SECS] | vs_wait_ready
#              vs_console_log NAME | vs_gexec NAME CMD | vs_wait_shutoff NAME [SECS]
#   storage    vs_iscsi_start | vs_nfs_start [netfs] | vs_loopdev FILE SIZE
#   misc       vs_virtsnap ARGS... | vs_alive PID | vs_sweep | vs_iscsi_direct_ok
#   two hosts  tests/lib/second-host.sh, sourced after this file: vs_second_host_start (VS_H2_URI),
#              vs_h2_guest_start, vs_h2_gexec ... (list in its header)
#   hypervisor tests/lib/hypervisor.sh, sourced after this file by tests that restart libvirtd or
#              kill QEMU under a backup: vs_libvirtd_bounce, vs_qemu_kill, vs_deleted_open,
#              vs_hv_clean (the invariants after a fault) ... (list in its header)
#
# Env: VIRTSNAP (binary, set by meson), VS_SOURCE_ROOT, VS_BUILD_ROOT, VS_KEEP=1 (keep the
# work dir), VS_GUEST_CACHE, KFLAVOUR (guest kernel, default cloud-amd64), ISCSI_PORT (first
# port tried, default 3262), VS_VIRTSNAP_WRAPPER (e.g. "valgrind -q --error-exitcode=99").

[ -z "${_VS_HARNESS_LOADED:-}" ] || return 0
_VS_HARNESS_LOADED=1
set -euo pipefail

VS_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VS_SOURCE_ROOT=${VS_SOURCE_ROOT:-$(cd "$VS_LIB_DIR/../.." && pwd)}
VS_BUILD_ROOT=${VS_BUILD_ROOT:-$VS_SOURCE_ROOT/build}
VS_GUEST_SRC=$VS_SOURCE_ROOT/tests/guest
VS_TARGETS_SRC=$VS_SOURCE_ROOT/tests/targets
VS_TEST_NAME=${VS_TEST_NAME:-$(basename "$0" .sh)}
VS_TESTS_ROOT=/tmp/virtsnap-tests
VS_MAIN_PID=$$
VS_WORKDIR=$VS_TESTS_ROOT/$VS_TEST_NAME.$VS_MAIN_PID
VS_URI=qemu:///system
_VS_T0=$(date +%s%N)
export VS_SOURCE_ROOT VS_BUILD_ROOT VS_WORKDIR

. "$VS_LIB_DIR/daemons.sh"
. "$VS_LIB_DIR/guest.sh"

# ---------------------------------------------------------------- messages and asserts

vs_log() {
  local ms=$(( ($(date +%s%N) - _VS_T0) / 1000000 ))
  printf '[%4d.%01ds] %s\n' $((ms / 1000)) $(((ms % 1000) / 100)) "$*" >&2
}
vs_skip() { echo "SKIP: $*"; exit 77; }
vs_fail() { echo "FAIL: $*" >&2; exit 1; }
vs_require_root() { [ "$(id -u)" = 0 ] || vs_skip "needs root (qemu:///system, tgtd, ganesha, loop devices)"; }

vs_assert_eq() {
  [ "$1" = "$2" ] || vs_fail "${3:-value}: expected '$2', got '$1'"
  vs_log "ok: ${3:-value} = '$2'"
}
vs_assert_contains() {
  case "$1" in
    *"$2"*) vs_log "ok: ${3:-output} contains '$2'" ;;
    *) vs_fail "${3:-output}: '$2' not found in:
$(printf '%s' "$1" | head -c 3000)" ;;
  esac
}

# ---------------------------------------------------------------- work dir and cleanup

_vs_starttime() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f20; }

_vs_wd_init() {
  [ -f "$VS_WORKDIR/.owner" ] && return 0
  mkdir -p "$VS_TESTS_ROOT" "$VS_WORKDIR"
  # QEMU runs as libvirt-qemu: it must traverse to disks, sockets and console logs here
  chmod 755 "$VS_TESTS_ROOT" "$VS_WORKDIR"
  echo "$VS_MAIN_PID $(_vs_starttime "$VS_MAIN_PID")" > "$VS_WORKDIR/.owner"
}

vs_workdir() { _vs_wd_init; echo "$VS_WORKDIR"; }

vs_on_exit() {
  _vs_wd_init
  { printf '%q ' "$@"; echo; } >> "$VS_WORKDIR/.cleanup"
}

# Run (and forget) every pushed cleanup, newest first; one failing does not stop the rest.
vs_cleanup_now() {
  local f=$VS_WORKDIR/.cleanup line
  # .running left by a cleanup that was killed midway (reaper): its entries are older than
  # any in .cleanup; replaying one that already ran is harmless, every step is idempotent.
  if [ -s "$f.running" ]; then cat "$f" >> "$f.running" 2>/dev/null; rm -f "$f"
  else
    [ -s "$f" ] || return 0
    mv "$f" "$f.running"
  fi
  while IFS= read -r line; do
    [ -n "$line" ] || continue
    vs_log "cleanup: $line"
    ( set +e; eval "$line" ) </dev/null >&2 || vs_log "cleanup step failed (ignored): $line"
  done < <(tac "$f.running")
  rm -f "$f.running"
}

_vs_on_exit_trap() {
  local rc=$?
  # EXIT traps are not inherited by subshells, but be sure: only the test's own shell cleans up
  [ "${BASHPID:-$$}" = "$VS_MAIN_PID" ] || return "$rc"
  [ -z "${_VS_EXITING:-}" ] || return "$rc"
  _VS_EXITING=1
  trap '' INT TERM
  set +eu
  vs_cleanup_now
  if [ -d "$VS_WORKDIR" ]; then
    if [ "${VS_KEEP:-0}" = 1 ]; then
      touch "$VS_WORKDIR/.keep"; vs_log "VS_KEEP=1: kept $VS_WORKDIR"
    else
      # --one-file-system: never delete through a mount a failed cleanup left behind
      rm -rf --one-file-system "$VS_WORKDIR" 2>/dev/null ||
        vs_log "could not remove all of $VS_WORKDIR (a mount left?)"
    fi
  fi
  case $rc in 0) vs_log "$VS_TEST_NAME: PASS";; 77) vs_log "$VS_TEST_NAME: SKIP";;
              *) vs_log "$VS_TEST_NAME: FAIL (exit $rc)";; esac
  exit "$rc"
}

_vs_on_err() {
  local rc=$1 line=$2 src=$3 cmd=$4
  # subshells ($(...)) report through the command that used them, in the main shell
  [ "${BASHPID:-$$}" = "$VS_MAIN_PID" ] || return 0
  case $- in *e*) ;; *) return 0;; esac     # under set +e a failure is expected
  [ "$rc" = 77 ] || echo "harness: command failed (exit $rc) at $src:$line: $cmd" >&2
}

# meson answers a timeout with SIGTERM to the test's process group and SIGKILL 0.5 s later,
# too soon to destroy a guest and stop targets. So on a signal a reaper is started in its
# own session: it waits for this shell to die, then replays what is left of its cleanup
# stack and sweeps. Whatever this shell finishes itself first is simply gone by then.
_vs_on_signal() {
  vs_log "caught SIG$1${2:+ ($2)}: cleaning up (a reaper finishes if this shell is killed)"
  if [ -d "$VS_WORKDIR" ] && [ -z "${VS_REAP:-}" ]; then
    VS_REAP="$VS_MAIN_PID $VS_WORKDIR" VS_TEST_NAME=reaper setsid bash "$VS_LIB_DIR/harness.sh" \
      </dev/null >>"$VS_TESTS_ROOT/reaper.log" 2>&1 &
  fi
  exit "$3"
}
trap _vs_on_exit_trap EXIT
trap '_vs_on_signal INT "" 130' INT
trap '_vs_on_signal TERM "timeout?" 143' TERM
set -o errtrace
trap '_vs_on_err $? $LINENO "${BASH_SOURCE[0]:-$0}" "$BASH_COMMAND"' ERR

# ---------------------------------------------------------------- libvirt objects

vs_libvirt_up() {
  vs_require_root
  vs_daemons_up || vs_fail "cannot start/reach libvirtd ($VS_URI)"
  export LIBVIRT_DEFAULT_URI=$VS_URI
}

# ---------------------------------------------------------------- opening a test

# vs_test_open [--libvirt | --root] [PREFIX]: how a test begins (call it directly, not in
# $(...): it sets variables). --libvirt: root and a running libvirtd, LIBVIRT_DEFAULT_URI
# set; --root: root only (else the test is skipped). Sets W (the work dir), REPO=$W/repo,
# STATE=$W/state and, with PREFIX, D=vst-PREFIX-$$ (the test's domain).
vs_test_open() {
  case "${1:-}" in
    --libvirt) vs_libvirt_up; shift ;;
    --root) vs_require_root; shift ;;
  esac
  _vs_wd_init
  W=$VS_WORKDIR
  REPO=$W/repo
  STATE=$W/state
  if [ -n "${1:-}" ]; then D=vst-$1-$$; fi
}

_vs_check_name() {
  case "$1" in vst-*) ;; *) vs_fail "test objects must be named vst-* (got '$1'): vs_sweep relies on it";; esac
}

_vs_domain_remove() {
  local d=$1
  local st
  # "not found" ends it; any other failure (libvirtd busy, restarting) is retried, since
  # taking it for "gone" would leave a guest running behind the test
  for _ in 1 2 3 4 5; do
    st=$(timeout 60 virsh -c "$VS_URI" domstate "$d" 2>&1) && break
    case "$st" in *"failed to get domain"*|*"Domain not found"*) return 0;; esac
    echo "harness: virsh domstate $d: $st (retrying)" >&2; sleep 1
  done
  st=${st%%$'\n'*}
  if [ "$st" != "shut off" ]; then
    # a QEMU busy in I/O can refuse SIGTERM for a moment ("Device or resource busy")
    timeout 60 virsh -c "$VS_URI" destroy "$d" >/dev/null 2>&1 ||
      { sleep 1; timeout 60 virsh -c "$VS_URI" destroy "$d" >/dev/null 2>&1; } || true
  fi
  # --nvram is refused by some libvirt versions for domains without one: fall back
  timeout 60 virsh -c "$VS_URI" undefine --checkpoints-metadata --snapshots-metadata --nvram "$d" >/dev/null 2>&1 ||
    timeout 60 virsh -c "$VS_URI" undefine --checkpoints-metadata --snapshots-metadata "$d" >/dev/null 2>&1 ||
    timeout 60 virsh -c "$VS_URI" undefine "$d" >/dev/null 2>&1 || true
  ! timeout 60 virsh -c "$VS_URI" domstate "$d" >/dev/null 2>&1
}

_vs_pool_remove() {
  local p=$1 out
  for _ in 1 2 3 4 5; do
    out=$(timeout 60 virsh -c "$VS_URI" pool-info "$p" 2>&1) && break
    case "$out" in *"failed to get pool"*|*"Storage pool not found"*) return 0;; esac
    echo "harness: virsh pool-info $p: $out (retrying)" >&2; sleep 1
  done
  timeout 60 virsh -c "$VS_URI" pool-destroy "$p" >/dev/null 2>&1 || true
  timeout 60 virsh -c "$VS_URI" pool-undefine "$p" >/dev/null 2>&1 || true
  ! timeout 60 virsh -c "$VS_URI" pool-info "$p" >/dev/null 2>&1
}

vs_domain_track() {
  _vs_check_name "$1"; _vs_wd_init
  echo "$1" >> "$VS_WORKDIR/.domains"
  vs_on_exit _vs_domain_remove "$1"
}

vs_pool_track() {
  _vs_check_name "$1"; _vs_wd_init
  echo "$1" >> "$VS_WORKDIR/.pools"
  vs_on_exit _vs_pool_remove "$1"
}

# vs_define_pool XMLFILE: define, build (dir/fs/netfs whose target is missing), start, track.
# Prints the pool name.
vs_define_pool() {
  local xml=$1 name type path out
  name=$(sed -n 's:.*<name>[[:space:]]*\([^<[:space:]]*\)[[:space:]]*</name>.*:\1:p' "$xml" | sed -n 1p)
  type=$(sed -n "s/.*<pool[^>]*type=['\"]\([a-z-]*\)['\"].*/\1/p" "$xml" | sed -n 1p)
  path=$(sed -n 's:.*<path>[[:space:]]*\([^<]*[^<[:space:]]\)[[:space:]]*</path>.*:\1:p' "$xml" | sed -n 1p)
  [ -n "$name" ] || vs_fail "vs_define_pool: no <name> in $xml"
  vs_pool_track "$name"
  out=$(virsh -c "$VS_URI" pool-define "$xml" 2>&1) || vs_fail "pool-define $xml: $out"
  case "$type" in dir|fs|netfs)
    if [ -n "$path" ] && [ ! -d "$path" ]; then
      out=$(virsh -c "$VS_URI" pool-build "$name" 2>&1) || vs_fail "pool-build $name: $out"
    fi ;;
  esac
  out=$(virsh -c "$VS_URI" pool-start "$name" 2>&1) || vs_fail "pool-start $name: $out"
  vs_log "pool $name ($type) started"
  echo "$name"
}

# ---------------------------------------------------------------- guests

vs_console_log() { echo "$VS_WORKDIR/$1.console.log"; }

# vs_guest_disk OUT [SIZE]: OUT *.qcow2 without SIZE = copy of the template; otherwise a
# fresh ext4 data disk from mkdisk.sh (raw unless OUT ends in .qcow2). Prints OUT.
vs_guest_disk() {
  local out=$1 size=${2:-}
  [ -n "${VS_GUEST_DIR:-}" ] || vs_guest_prepare || vs_fail "cannot build the test guest"
  mkdir -p "$(dirname "$out")"
  if [ -z "$size" ] && [[ "$out" == *.qcow2 ]]; then
    vs_guest_template_copy "$out" || vs_fail "cannot copy the guest template to $out"
  else
    "$VS_GUEST_SRC/mkdisk.sh" "$out" "${size:-1G}" || vs_fail "mkdisk.sh $out ${size:-1G} failed"
    chmod 644 "$out"
  fi
  echo "$out"
}

# vs_guest_xml NAME DISK [EXTRA_DISK_XML]: mkdomain.sh's XML (it honours VIRT, MEM_MIB,
# CMDLINE_EXTRA, DISK_FMT), console to $(vs_console_log NAME), EXTRA inserted before </devices>.
# DISK is vda's file; with $VS_VDA_XML set, vda is that <disk> element instead (a network disk).
vs_guest_xml() {
  local name=$1 disk=$2 extra=${3:-}
  [ -n "${VS_GUEST_DIR:-}" ] || vs_guest_prepare || vs_fail "cannot build the test guest"
  _vs_wd_init
  "$VS_GUEST_SRC/mkdomain.sh" "$name" "$VS_GUEST_DIR" "$disk" "$(vs_console_log "$name")" |
    VS_EXTRA=$extra awk '/<\/devices>/ && !done { if (ENVIRON["VS_EXTRA"] != "") print ENVIRON["VS_EXTRA"]; done = 1 } { print }' |
    if [ -n "${VS_VDA_XML:-}" ]; then
      perl -0pe 's{<disk type=.file. device=.disk.>.*?</disk>}{$ENV{VS_VDA_XML}}s'
    else
      cat
    fi
}

# vs_wait_agent NAME [SECS]: until guest-ping answers (default 120 s); fails with the console tail.
vs_wait_agent() {
  local name=$1 secs=${2:-120}
  vs_wait_agent_until "$name" $(( $(date +%s) + secs )) && return 0
  vs_fail "agent of $name did not answer guest-ping in ${secs}s; console:
$(tail -n 20 "$(vs_console_log "$name")" 2>/dev/null)"
}

# vs_guest_uptime_at_least NAME SECS: waits until the guest has been up SECS seconds. Tests that
# find a restored guest's boot in its record log by the uptime dropping need the original to
# have been up longer than a boot takes (under load a boot reaches the writer after ~10 s).
vs_guest_uptime_at_least() {
  local name=$1 secs=$2 up
  for _ in $(seq $((secs + 60))); do
    up=$(vs_gexec "$name" 'cut -d. -f1 /proc/uptime' 2>/dev/null || echo 0)
    [ "${up:-0}" -ge "$secs" ] 2>/dev/null && return 0
    sleep 1
  done
  vs_fail "$name: uptime still ${up:-?} s, waited for $secs s"
}

# vs_guest_start NAME DISK [EXTRA_DISK_XML]: persistent domain, started, agent answering.
vs_guest_start() {
  local name=$1 disk=$2 extra=${3:-} xml t0 end out
  [ -n "${LIBVIRT_DEFAULT_URI:-}" ] || vs_libvirt_up
  [ -n "${VS_GUEST_DIR:-}" ] || vs_guest_prepare || vs_fail "cannot build the test guest"
  vs_domain_track "$name"
  xml=$VS_WORKDIR/$name.xml
  vs_guest_xml "$name" "$disk" "$extra" > "$xml"
  rm -f "$(vs_console_log "$name")"
  out=$(virsh -c "$VS_URI" define "$xml" 2>&1) || vs_fail "define $name: $out"
  t0=$(date +%s%N); end=$(( $(date +%s) + 120 ))
  out=$(virsh -c "$VS_URI" start "$name" 2>&1) || vs_fail "start $name: $out"
  vs_wait_ready "$name" "$(vs_console_log "$name")" 120 || vs_fail "$name did not boot"
  vs_wait_agent_until "$name" "$end" ||
    vs_fail "agent of $name did not answer guest-ping within 120 s of start; console:
$(tail -n 20 "$(vs_console_log "$name")" 2>/dev/null)"
  VS_LAST_BOOT_MS=$(( ($(date +%s%N) - t0) / 1000000 ))
  vs_log "$name: agent answers $((VS_LAST_BOOT_MS / 1000)).$(( (VS_LAST_BOOT_MS % 1000) / 100 ))s after start"
}

# vs_gexec NAME 'shell command': run in the guest via qemu-ga, print its output, its exit code.
vs_gexec() { LIBVIRT_DEFAULT_URI=$VS_URI "$VS_GUEST_SRC/gexec.sh" "$@"; }

# vs_wait_shutoff NAME [SECS]: until the domain is no longer running.
vs_wait_shutoff() {
  local name=$1 end=$(( $(date +%s) + ${2:-60} )) st
  while :; do
    st=$(timeout 15 virsh -c "$VS_URI" domstate "$name" 2>/dev/null | sed -n 1p || true)
    case "$st" in running|paused|"in shutdown"|pmsuspended) ;; *) return 0;; esac
    [ "$(date +%s)" -lt "$end" ] || vs_fail "$name still '$st' after ${2:-60}s"
    sleep 0.1
  done
}

# ---------------------------------------------------------------- storage targets

_vs_port_busy() { [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]; }

# vs_iscsi_start: tgtd on 127.0.0.1, state in WORKDIR/iscsi. Honours ISCSI_LUNS, ISCSI_SIZE,
# ISCSI_REFLINK, ISCSI_IQN. Exports ISCSI_PORT ISCSI_PORTAL ISCSI_IQN ISCSI_URL_<n> VS_ISCSI_DIR.
vs_iscsi_start() {
  local dir port out
  command -v tgtd >/dev/null || vs_skip "tgtd not installed (scripts/deps.sh --test)"
  dir=$(vs_workdir)/iscsi
  vs_on_exit "$VS_TARGETS_SRC/iscsi-target.sh" "$([ "${VS_KEEP:-0}" = 1 ] && echo stop || echo purge)" "$dir"
  port=${ISCSI_PORT:-3262}
  for _ in $(seq 1 20); do
    # 3260/3261 are left to a system target and to hand-run copies of the shared scripts
    if _vs_port_busy "$port"; then port=$((port + 1)); continue; fi
    if out=$(ISCSI_PORT=$port "$VS_TARGETS_SRC/iscsi-target.sh" start "$dir" 2>&1); then break; fi
    out="$out
$(tail -n 5 "$dir/tgtd.log" 2>/dev/null)"
    # another test may take the port between the check and tgtd's bind
    case "$out" in *"already in use"*|*"Address in use"*|*EADDRINUSE*)
      "$VS_TARGETS_SRC/iscsi-target.sh" stop "$dir" >/dev/null 2>&1 || true
      port=$((port + 1)); continue;; esac
    vs_fail "iscsi-target.sh start (port $port): $out"
  done
  [ -f "$dir/iscsi.env" ] || vs_fail "no free iSCSI port found from ${ISCSI_PORT:-3262}"
  set -a; . "$dir/iscsi.env"; set +a
  export ISCSI_PORT=$port VS_ISCSI_DIR=$dir
  vs_log "iSCSI target up: $ISCSI_PORTAL $ISCSI_IQN"
}

# vs_nfs_start [netfs]: nfs-ganesha (v3+v4) on 127.0.0.1 serving WORKDIR/nfs/export.
# Port 111 (rpcbind) is global, so one NFS server per machine: a lock file serialises NFS
# tests across build dirs and users; the lock is held until the test's shell exits.
# Exports NFS_URL NFS_V4_ARGS NFS_EXPORT_DIR [NFS_NETFS_TARGET] VS_NFS_DIR.
vs_nfs_start() {
  local dir out emu=0
  [ "${1:-}" = netfs ] && emu=1
  command -v ganesha.nfsd >/dev/null || vs_skip "nfs-ganesha not installed (scripts/deps.sh --test)"
  mkdir -p /run/lock
  exec {_VS_NFS_LOCK_FD}>/run/lock/virtsnap-tests-nfs.lock
  if ! flock -n "$_VS_NFS_LOCK_FD"; then
    vs_log "waiting for another test's NFS server (/run/lock/virtsnap-tests-nfs.lock)"
    flock -w 600 "$_VS_NFS_LOCK_FD" || vs_fail "NFS lock still held after 600 s"
  fi
  dir=$(vs_workdir)/nfs
  vs_on_exit "$VS_TARGETS_SRC/nfs-target.sh" "$([ "${VS_KEEP:-0}" = 1 ] && echo stop || echo purge)" "$dir"
  out=$(NFS_NETFS_EMU=$emu "$VS_TARGETS_SRC/nfs-target.sh" start "$dir" 2>&1) ||
    vs_fail "nfs-target.sh start: $out"
  set -a; . "$dir/nfs.env"; set +a
  export VS_NFS_DIR=$dir
  vs_log "NFS server up: $NFS_URL${NFS_NETFS_TARGET:+ (netfs target $NFS_NETFS_TARGET)}"
}

# Detach DEV only while FILE still backs it: a late replay (reaper) must not detach a loop
# device another test got in the meantime.
_vs_loop_detach() {
  [ "$(losetup -nO BACK-FILE "$1" 2>/dev/null)" = "$2" ] || return 0
  losetup -d "$1"
}

# vs_loopdev FILE SIZE: prints the loop device backed by a new sparse FILE; detached on exit.
vs_loopdev() {
  local file=$1 size=$2 dev
  [ -e /dev/loop-control ] || vs_skip "no loop devices (/dev/loop-control)"
  truncate -s "$size" "$file"
  dev=$(losetup --find --show "$file") || vs_fail "losetup $file failed"
  vs_on_exit _vs_loop_detach "$dev" "$(realpath "$file")"
  echo "$dev"
}

# vs_xfs_reflink DIR SIZE: an XFS made with reflink (mkfs.xfs -m reflink=1) on a sparse loop
# file DIR.img, mounted on DIR (made); unmounted on exit, after what is registered later (a
# guest on it) is cleaned up. Skips without mkfs.xfs or loop devices.
vs_xfs_reflink() {
  local dir=$1 size=$2
  command -v mkfs.xfs >/dev/null || vs_skip "mkfs.xfs missing (xfsprogs; scripts/deps.sh --test)"
  [ -e /dev/loop-control ] || vs_skip "no loop devices"
  truncate -s "$size" "$dir.img"
  mkfs.xfs -q -m reflink=1 "$dir.img"
  mkdir -p "$dir"
  vs_on_exit umount -l "$dir"
  mount -o loop "$dir.img" "$dir"
}

# ---------------------------------------------------------------- virtsnap

vs_virtsnap() {
  local bin=${VIRTSNAP:-$VS_BUILD_ROOT/tools/virtsnap}
  [ -x "$bin" ] || vs_fail "virtsnap binary not found: $bin (meson compile -C $VS_BUILD_ROOT)"
  vs_log "virtsnap $*"
  ${VS_VIRTSNAP_WRAPPER:-} "$bin" "$@"
}

# ---------------------------------------------------------------- leftovers

# vs_alive PID: running and not a zombie (PID 1 of a container may reap late or never)
vs_alive() {
  local st
  st=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  [ "$(echo "${st##*) }" | cut -d' ' -f1)" != Z ]
}

_vs_owner_alive() {       # DIR: is the test process that created this work dir still running?
  local d=$1 pid st
  pid=${d##*.}
  case "$pid" in ''|*[!0-9]*) return 1;; esac
  vs_alive "$pid" || return 1
  [ -f "$d/.owner" ] || return 0          # just being created
  read -r _ st < "$d/.owner" || return 0
  [ "$st" = "$(_vs_starttime "$pid")" ]
}

# Remove what dead tests left: vst-* domains/pools no live test has registered, targets,
# loop devices and mounts under dead work dirs, then those dirs (unless kept with VS_KEEP=1).
vs_sweep() {
  [ "$(id -u)" = 0 ] || return 0
  local - d n protected=" " dead=() f doms="" pools="" lv=0
  set +e      # best effort: one stuck object must not keep the others alive
  # List first, read the owners' registries second: tests register a name before creating
  # the object, so everything listed is already registered when the registries are read.
  if pgrep -x libvirtd >/dev/null && vs_libvirt_answers; then
    lv=1
    doms=$(timeout 30 virsh -c "$VS_URI" list --all --name 2>/dev/null | grep '^vst-')
    pools=$(timeout 30 virsh -c "$VS_URI" pool-list --all --name 2>/dev/null | grep '^vst-')
  fi
  for d in "$VS_TESTS_ROOT"/*.*; do
    [ -d "$d" ] || continue
    if [ "$d" = "$VS_WORKDIR" ] || _vs_owner_alive "$d"; then
      protected+="$(cat "$d/.domains" "$d/.pools" 2>/dev/null | tr '\n' ' ') "
    else
      dead+=("$d")
    fi
  done
  if [ "$lv" = 1 ]; then
    for n in $doms; do
      case "$protected" in *" $n "*) continue;; esac
      echo "sweep: removing leftover domain $n" >&2; _vs_domain_remove "$n"
    done
    for n in $pools; do
      case "$protected" in *" $n "*) continue;; esac
      echo "sweep: removing leftover pool $n" >&2; _vs_pool_remove "$n"
    done
  fi
  for d in "${dead[@]}"; do
    echo "sweep: cleaning up after dead test $d" >&2
    # a second libvirt host (tests/lib/second-host.sh): its dir holds inner.sh + libvirtd.pid
    for f in $(find "$d" -xdev -maxdepth 2 -name inner.sh 2>/dev/null); do
      [ -f "$(dirname "$f")/libvirtd.pid" ] && "$VS_TARGETS_SRC/second-host.sh" stop "$(dirname "$f")" >/dev/null 2>&1 || true
    done
    for f in $(find "$d" -xdev -maxdepth 3 -name tgtd.pid 2>/dev/null); do
      "$VS_TARGETS_SRC/iscsi-target.sh" stop "$(dirname "$f")" >/dev/null 2>&1 || true
    done
    for f in $(find "$d" -xdev -maxdepth 3 \( -name ganesha.pid -o -name rpcbind.pid -o -name ganesha.conf \) 2>/dev/null); do
      "$VS_TARGETS_SRC/nfs-target.sh" stop "$(dirname "$f")" >/dev/null 2>&1 || true
    done
    losetup -nO NAME,BACK-FILE 2>/dev/null | while read -r n f; do
      case "$f" in "$d"/*) echo "sweep: detaching $n ($f)" >&2; losetup -d "$n" || true;; esac
    done
    findmnt -rn -o TARGET 2>/dev/null | grep "^$d/" | sort -r | while read -r n; do
      echo "sweep: unmounting $n" >&2; umount "$n" || umount -l "$n" || true
    done
    [ -e "$d/.keep" ] || rm -rf --one-file-system "$d" 2>/dev/null || true
  done
}

if [ -n "${VS_REAP:-}" ]; then   # run as the reaper of a signalled test (see _vs_on_signal)
  read -r _vs_pid _vs_dir <<< "$VS_REAP"
  echo "$(date '+%F %T') reaper: waiting for pid $_vs_pid ($_vs_dir)"
  for _ in $(seq 600); do vs_alive "$_vs_pid" || break; sleep 0.1; done
  if [ -s "$_vs_dir/.cleanup" ]; then ( VS_WORKDIR=$_vs_dir; vs_cleanup_now ) 2>&1; fi
  vs_sweep 2>&1
  echo "$(date '+%F %T') reaper: done"
  exit 0
fi
vs_sweep || echo "harness: vs_sweep failed (continuing)" >&2
