# tests/lib/hypervisor.sh -- sourced (bash) by the integration tests that break the
# hypervisor side under a running backup (backup-hypervisor*.sh), after harness.sh: restart
# libvirtd with guests running, kill a guest's QEMU, see what QEMU still holds open, and one
# checker of everything virtsnap promises after any fault -- the guest runs (not paused),
# thawed, on its own files with no backing file added, no overlay or scratch file is left
# (on disk or open as deleted), no journal, the records the guest had synced before the
# fault are all still there, and a later backup works and verifies. Take
# /tmp/vs-integration.lock around every run: a libvirtd restart hits every guest on the machine.
#
#   vs_libvirtd_bounce             restart libvirtd (domains keep running), wait until it answers
#   vs_qemu_pid NAME | vs_qemu_kill NAME     the domain's QEMU; SIGKILL it, wait for "shut off"
#   vs_deleted_open NAME           files NAME's QEMU holds open that are deleted, one a line
#   vs_fault_sleeping PID          is a thread of PID in a sleep (a VIRTSNAP_FAULT=sleep: window)
#   vs_hv_backup_bg NAME POINT MS ARGS... | vs_hv_wait_window SECS WHAT CMD... | vs_hv_backup_wait SECS
#   vs_hv_expect_done_or_failed NAME | vs_hv_expect_resumed NAME
#                                  a backup with a widened window in the background, its end
#   vs_wait_for SECS WHAT CMD...   until CMD succeeds, else vs_fail "WHAT"
#   vs_records_mark NAME           prints the last record the guest's writer has on disk (synced)
#   vs_hv_clean NAME STATE DIR... [-- TARGET=FILE...]
#                                  the invariants after a fault; DIRs must hold no overlay/scratch
#   vs_hv_hotplug NAME REPO STATE FILE ARGS...
#                                  a disk attached --live, a backup: taken whole or refused by name
#   vs_hv_later_backup NAME REPO STATE MARK [pull]
#                                  a later backup succeeds, the repo verifies, its export of vda
#                                  is consistent and holds the record MARK (pull: two, the 2nd inc)

# libvirtd with domains running: vs_libvirtd_restart refuses that on purpose, here it is the
# point. On SIGTERM libvirtd leaves QEMU running and reconnects to it when it starts again.
vs_libvirtd_bounce() {
  local pid t0=$(date +%s%N)
  pid=$(pgrep -x libvirtd | sed -n 1p)
  if [ -n "$pid" ]; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 300); do vs_alive "$pid" || break; sleep 0.1; done
    vs_alive "$pid" && vs_fail "libvirtd $pid did not exit within 30 s of SIGTERM"
  fi
  _vs_d_spawn libvirtd -d || vs_fail "libvirtd -d failed"
  for _ in $(seq 1 120); do
    if vs_libvirt_answers; then
      vs_log "libvirtd restarted (was pid ${pid:-none}) in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
      return 0
    fi
    sleep 0.5
  done
  vs_fail "libvirtd does not answer 60 s after its restart"
}

vs_qemu_pid() {
  local pid
  pid=$(cat "/run/libvirt/qemu/$1.pid" 2>/dev/null) || return 1
  vs_alive "$pid" && echo "$pid"
}

# The crash a host sees when QEMU dies (OOM killer, a bug): no shutdown, the disks as they are.
vs_qemu_kill() {
  local pid
  pid=$(vs_qemu_pid "$1") || vs_fail "no QEMU found for $1"
  kill -KILL "$pid"
  for _ in $(seq 1 100); do vs_alive "$pid" || break; sleep 0.1; done
  vs_alive "$pid" && vs_fail "QEMU $pid of $1 survived SIGKILL"
  vs_wait_shutoff "$1" 60
  vs_log "QEMU $pid of $1 killed"
}

vs_deleted_open() {
  local pid
  pid=$(vs_qemu_pid "$1") || return 0
  find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 -printf '%l\n' 2>/dev/null | grep ' (deleted)$' || true
}

# A thread of PID in nanosleep/clock_nanosleep (35/230 on x86_64) at three looks 0.3 s apart:
# a VIRTSNAP_FAULT=sleep: window. virtsnap waits for jobs and threads in futex or poll; its
# few polling loops sleep 50-200 ms at a time and call libvirt in between.
vs_fault_sleeping() {
  local t n hit
  for _ in 1 2 3; do
    hit=
    for t in /proc/$1/task/*; do
      n=$(cut -d' ' -f1 "$t/syscall" 2>/dev/null) || continue
      case "$n" in 35|230) hit=1; break;; esac
    done
    [ -n "$hit" ] || return 1
    sleep 0.3
  done
}

# vs_hv_backup_bg NAME POINT MS ARGS...: `virtsnap backup --json ARGS` in the background,
# sleeping MS at POINT; output in $VS_WORKDIR/NAME.{json,err}, its pid in VS_HV_PID.
# Not in $(...): it sets VS_HV_PID.
vs_hv_backup_bg() {
  local name=$1 point=$2 ms=$3; shift 3
  vs_log "virtsnap backup $* (VIRTSNAP_FAULT=sleep:$point:$ms)"
  # the binary itself ($! must be virtsnap): a wrapper would get the signals and the wait
  VIRTSNAP_FAULT=sleep:$point:$ms "${VIRTSNAP:-$VS_BUILD_ROOT/tools/virtsnap}" backup --json "$@" \
    > "$VS_WORKDIR/$name.json" 2> "$VS_WORKDIR/$name.err" &
  VS_HV_PID=$!
  VS_HV_NAME=$name
}

# vs_hv_backup_wait SECS: until the background backup ends, at most SECS (it is then killed
# and the test fails: bounded, not the 600 s commit timeout). Sets VS_HV_RC; shows its stderr.
vs_hv_backup_wait() {
  local secs=$1 t0=$(date +%s)
  while vs_alive "$VS_HV_PID"; do
    if [ $(( $(date +%s) - t0 )) -ge "$secs" ]; then
      kill -KILL "$VS_HV_PID" 2>/dev/null || true
      wait "$VS_HV_PID" 2>/dev/null || true
      sed 's/^/  virtsnap: /' "$VS_WORKDIR/$VS_HV_NAME.err" >&2
      vs_fail "$VS_HV_NAME: virtsnap still running ${secs}s after the fault (killed)"
    fi
    sleep 0.2
  done
  VS_HV_RC=0
  wait "$VS_HV_PID" || VS_HV_RC=$?
  sed 's/^/  virtsnap: /' "$VS_WORKDIR/$VS_HV_NAME.err" >&2
  vs_log "$VS_HV_NAME: virtsnap exit $VS_HV_RC $(( $(date +%s) - t0 ))s after the fault; $(jq -c '.domains[]? | {name, ok, consistency, note, error}' "$VS_WORKDIR/$VS_HV_NAME.json" 2>/dev/null | tr '\n' ' ')"
  # a domain with no backup has no consistency to claim (issue 12, item 6)
  vs_assert_eq "$(jq -r '[.domains[]? | select(.ok == false and .consistency == "quiesced") | .name] | join(" ")' \
    "$VS_WORKDIR/$VS_HV_NAME.json")" "" "$VS_HV_NAME: domains not backed up that --json calls 'quiesced'"
}

# vs_hv_expect_resumed NAME: after a background backup whose file system filled (QEMU paused
# the guest): it ended within the bound, done or failed by name, the guest runs again, and
# the run's note says it was paused and resumed.
vs_hv_expect_resumed() {
  local d=$1 st note
  vs_hv_backup_wait "$BOUND"
  vs_hv_expect_done_or_failed "$d"
  st=$(virsh domstate --reason "$d" | sed -n 1p)
  case "$st" in running*) ;; *) vs_fail "$VS_HV_NAME: guest '$st' after the backup";; esac
  note=$(jq -r '.domains[0].note // ""' "$VS_WORKDIR/$VS_HV_NAME.json")
  vs_assert_contains "$note" "paused" "$VS_HV_NAME: the note says the guest was paused"
  vs_assert_contains "$note" "resumed" "$VS_HV_NAME: the note says it was resumed"
}

# vs_hv_wait_window SECS WHAT CMD...: until CMD succeeds while the background backup runs;
# a backup that ended before its window fails the test with its stderr.
vs_hv_wait_window() {
  local secs=$1 what=$2 end; shift 2
  end=$(( $(date +%s) + secs ))
  until "$@"; do
    if ! vs_alive "$VS_HV_PID"; then
      sed 's/^/  virtsnap: /' "$VS_WORKDIR/$VS_HV_NAME.err" >&2
      vs_fail "$what: virtsnap ended before the window"
    fi
    [ "$(date +%s)" -lt "$end" ] || vs_fail "$what: not seen within ${secs}s"
    sleep 0.1
  done
}

# After a fault virtsnap either finished the backup or failed the domain by name.
vs_hv_expect_done_or_failed() {
  local d=$1 err
  err=$(cat "$VS_WORKDIR/$VS_HV_NAME.err")
  case "$VS_HV_RC" in
    0) vs_assert_eq "$(jq -r '.domains[0].ok' "$VS_WORKDIR/$VS_HV_NAME.json")" true "$VS_HV_NAME: exit 0, domain ok";;
    1) vs_assert_contains "$err" "$d" "$VS_HV_NAME: the error names the domain";;
    *) vs_fail "$VS_HV_NAME: virtsnap exit $VS_HV_RC (expected 0 or 1)";;
  esac
}

vs_wait_for() {
  local secs=$1 what=$2 end; shift 2
  end=$(( $(date +%s) + secs ))
  until "$@"; do
    [ "$(date +%s)" -lt "$end" ] || vs_fail "$what: not seen within ${secs}s"
    sleep 0.1
  done
}

# The writer does not fsync; the line read before the sync is on the disk after it.
vs_records_mark() {
  local m
  m=$(vs_gexec "$1" 'tail -n 1 /data/records.log > /run/vs-mark; sync; cat /run/vs-mark') ||
    vs_fail "$1: cannot read the guest's record log"
  [ -n "$m" ] || vs_fail "$1: empty record log"
  echo "$m"
}

_vs_freeze_status() {
  timeout 20 virsh -c "$VS_URI" qemu-agent-command "$1" '{"execute":"guest-fsfreeze-status"}' --timeout 5 2>/dev/null ||
    echo agent-silent
}

# vs_hv_clean NAME STATE DIR... [-- TARGET=FILE...]: every TARGET on its FILE (default: the
# vda of $VS_HV_DISK); no overlay (.virtsnap-) or scratch file in the DIRs or STATE.
vs_hv_clean() {
  local d=$1 state=$2 st dirs=() pairs=() p t f
  shift 2
  while [ $# -gt 0 ] && [ "$1" != -- ]; do dirs+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  pairs=("$@")
  [ ${#pairs[@]} -gt 0 ] || pairs=("vda=$VS_HV_DISK")
  st=$(timeout 20 virsh -c "$VS_URI" domstate --reason "$d" 2>&1 | sed -n 1p)
  case "$st" in running*) vs_log "ok: $d $st";; *) vs_fail "$d state: expected running, got '$st'";; esac
  st=$(_vs_freeze_status "$d")
  case "$st" in *thawed*) vs_log "ok: $d thawed";; *) vs_fail "$d not thawed: $st";; esac
  for p in "${pairs[@]}"; do
    t=${p%%=*} f=${p#*=}
    vs_assert_eq "$(virsh domblklist "$d" --details | awk -v t="$t" '$3 == t {print $4}')" "$f" "$d $t on its own file"
    vs_assert_eq "$(qemu-img info -U --output=json "$f" | jq -r '.["backing-filename"] // "none"')" none "$t: no backing file"
  done
  vs_assert_eq "$(virsh dumpxml "$d" | grep -c '\.virtsnap-[0-9]' || true)" 0 "$d XML names no overlay"
  vs_assert_eq "$(vs_deleted_open "$d" | grep -c 'virtsnap\|scratch' || true)" 0 \
    "files of virtsnap open as deleted by QEMU ($(vs_deleted_open "$d" | tr '\n' ' '))"
  vs_assert_eq "$(find "${dirs[@]}" "$state" -name '*.virtsnap-*' 2>/dev/null | wc -l)" 0 "overlay files left"
  vs_assert_eq "$(find "$state/scratch" "$state/overlays" -type f 2>/dev/null | wc -l)" 0 "scratch/overlay files left in $state"
  vs_assert_eq "$(ls "$state/journal" 2>/dev/null | wc -l)" 0 "journals left"
  vs_assert_eq "$(timeout 20 virsh domjobinfo "$d" | awk -F': *' '/Job type/ {print $2}' | tr -d ' ')" None "$d: no job left"
}

_vs_hv_records_in() {   # IMAGE MARK: MARK is a line of the image's /records.log
  local img=$1 mark=$2 tmp
  tmp=$(mktemp -d "$VS_WORKDIR/rec.XXXX")
  qemu-img convert -U -O raw "$img" "$tmp/fs.raw"
  debugfs -R "dump /records.log $tmp/records.log" "$tmp/fs.raw" 2>/dev/null
  if grep -Fxq "$mark" "$tmp/records.log"; then
    vs_log "ok: the record synced before the fault (seq ${mark%% *}) is in the later backup"
    rm -rf "$tmp"
  else
    vs_fail "record synced before the fault (seq ${mark%% *}) missing from the later backup; its last: $(tail -n 1 "$tmp/records.log" | cut -c1-40)"
  fi
}

vs_hv_later_backup() {
  local d=$1 repo=$2 state=$3 mark=$4 pull=${5:-} out id args=()
  out=$VS_WORKDIR/later.$(date +%s%N).json
  [ -z "$pull" ] || args=(--mode=begin)
  vs_virtsnap backup --repo "$repo" --state-dir "$state" --json "${args[@]}" "$d" > "$out" ||
    vs_fail "later backup of $d failed: $(jq -c '.domains[0] | {error, note}' "$out" 2>/dev/null)"
  if [ -n "$pull" ]; then
    vs_virtsnap backup --repo "$repo" --state-dir "$state" --json "${args[@]}" "$d" > "$out" ||
      vs_fail "second later backup of $d failed: $(jq -c '.domains[0] | {error, note}' "$out" 2>/dev/null)"
    vs_assert_eq "$(jq -r '.domains[0].level' "$out")" inc "level of the second later backup"
  fi
  vs_assert_eq "$(jq -r '.domains[0].ok' "$out")" true "later backup ok"
  id=$(jq -r .id "$out")
  vs_virtsnap verify --repo "$repo" >/dev/null || vs_fail "repository does not verify after the later backup"
  rm -f "$VS_WORKDIR/later.qcow2"
  vs_virtsnap export --repo "$repo" "$id" "$d" vda "$VS_WORKDIR/later.qcow2"
  "$VS_GUEST_SRC/verify-backup.sh" "$VS_WORKDIR/later.qcow2" >&2 || vs_fail "later backup $id is not a consistent copy"
  _vs_hv_records_in "$VS_WORKDIR/later.qcow2" "$mark"
  rm -f "$VS_WORKDIR/later.qcow2"
}

# vs_hv_hotplug NAME REPO STATE FILE ARGS...: FILE (made here: raw, or qcow2 by its name)
# attached --live as vdb, then `virtsnap backup ARGS`: it backs vdb up (its export matches
# the disk, which the guest leaves alone) or refuses it by name; either way no overlay of
# libvirt's choosing (<disk>.<snapshot name>) is left beside the disks, and after recover the
# guest is on both its own files. vdb is detached again at the end.
vs_hv_hotplug() {
  local d=$1 repo=$2 state=$3 file=$4 rc fmt=raw w=$VS_WORKDIR stem vstem; shift 4
  case "$file" in *.qcow2) fmt=qcow2;; esac
  stem=$(basename "${file%.*}") vstem=$(basename "${VS_HV_DISK%.*}")
  vs_log "--- hotplug: a $fmt disk attached --live"
  rm -f "$file" "$w/hp.json" "$w/hp.err" "$w/hot-export.qcow2"
  "$VS_GUEST_SRC/mkdisk.sh" "$file" 64M >/dev/null && chmod 644 "$file"
  virsh attach-disk "$d" "$file" vdb --live --driver qemu --subdriver "$fmt" --targetbus virtio >/dev/null
  rc=0
  vs_virtsnap backup --repo "$repo" --state-dir "$state" --json "$@" "$d" > "$w/hp.json" 2> "$w/hp.err" || rc=$?
  cat "$w/hp.err" >&2
  vs_log "hotplug $fmt: exit $rc; $(jq -c '.domains[0] | {ok, error, disks: [.disks[].target]}' "$w/hp.json" 2>/dev/null)"
  case "$rc" in
    0) vs_assert_eq "$(jq -r '[.domains[0].disks[].target] | sort | join(",")' "$w/hp.json")" vda,vdb "hotplug $fmt: disks backed up"
       vs_virtsnap export --repo "$repo" "$(jq -r .id "$w/hp.json")" "$d" vdb "$w/hot-export.qcow2"
       qemu-img compare -U "$file" "$w/hot-export.qcow2" >&2 || vs_fail "hotplug $fmt: vdb's export differs from the disk";;
    1) vs_assert_contains "$(cat "$w/hp.err")" vdb "hotplug $fmt: the refusal names the disk"
       # a refusal of virtsnap's own, not libvirt failing on the default overlay it chose for
       # a disk the snapshot did not name (<stem>.<snapshot name>; virtsnap's own are <file>.virtsnap-)
       case "$(cat "$w/hp.err")" in *"${file%.*}.virtsnap-"*)
         vs_fail "hotplug $fmt: the snapshot gave vdb an overlay of libvirt's choosing: $(jq -r '.domains[0].error' "$w/hp.json")";; esac;;
    *) vs_fail "hotplug $fmt: virtsnap exit $rc";;
  esac
  # libvirt names its default overlay after the disk: <stem>.<snapshot name>
  vs_assert_eq "$(find "$(dirname "$file")" "$(dirname "$VS_HV_DISK")" -maxdepth 1 \( -name "$stem.*" -o -name "$vstem.*" \) \
      ! -name "$(basename "$file")" ! -name "$(basename "$VS_HV_DISK")" | sort -u | tr '\n' ' ')" "" \
    "hotplug $fmt: files beside the disks other than theirs"
  vs_virtsnap recover --state-dir "$state" 2>&1 | sed 's/^/  recover: /' >&2
  vs_hv_clean "$d" "$state" "$w" -- "vda=$VS_HV_DISK" "vdb=$file"
  virsh detach-disk "$d" vdb --live >/dev/null
  for _ in $(seq 50); do [[ "$(virsh domblklist "$d")" == *vdb* ]] || break; sleep 0.2; done
}
