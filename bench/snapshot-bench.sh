#!/bin/bash
# snapshot-bench.sh [WORKDIR] -- issue 15's speed goals for storage snapshots, measured on
# one running guest, one disk, one run per data size: a qcow2 data disk (ext4, vda) on a
# loop-mounted XFS made with reflink, holding SIZES MiB of random (incompressible) data
# written offline with mkfs.ext4 -d before the guest starts (default 512 and 4096 MiB,
# the same 6 GiB virtual disk). For each size, RUNS times each, interleaved, page cache
# dropped before every run:
#   copy      `virtsnap backup --repo R --init --json DOM`: today's copy backup; its
#             overlay_ms (the guest on an overlay) spans the whole copy
#   reflink   the same with --storage-snapshot=reflink: the overlay committed right after
#             a reflink of the stable base, the copy read from the snapshot
#   no-copy   --storage-snapshot=reflink --no-copy: the snapshot is the backup
#   snapshot  `snapio create` of the disk alone: the storage operation inside reflink's
#             overlay_ms (says where that time goes), deleted after each run. snapio's
#             libraries are loaded before each snapio run, after the cache drop: its
#             process start is not the operation
# then the restores, each RUNS times, with the guest running and again with it paused
# (`virsh suspend`: its TCG vCPU off the 2 cores, the cores idle but for other jobs):
#   from the repository  `virtsnap restore --repo R DOM --as NEW --target-dir OUT` + fsync
#   clone                `snapio clone HANDLE NAME` of the no-copy backup's snapshot
#                        (`restore --from-snapshot` is not on main: the storage operation)
# and, the guest shut off (destroy), `snapio rollback HANDLE` of the disk RUNS times, then
# the guest started on the rolled-back disk (boot until its agent answers, timed apart).
# The clone and one repository restore are checked with tests/guest/verify-backup.sh
# (fsck clean, every record valid; not timed). After each --no-copy backup, `virtsnap vault`
# of it (a full copy of the snapshot into that backup's fresh repository), against the copy
# backup's throughput (when the binary has vault). Then, unless RBD=0, the same disk is copied into
# an RBD image of a single-node Ceph (tests/targets/ceph-target.sh, memstore: in RAM) under a
# second guest (a libvirt network disk, cephx key in a libvirt secret): copy, rbd and
# rbd --no-copy backups and `snapio --rbd create` alone, RUNS times; a failure there is
# recorded in the section as the reason, not fatal. With vault: each rbd --no-copy backup
# vaulted, then the guest writes CHANGE_PCT (5) % of the data anew, one more --no-copy
# backup into the last repository and its incremental vault (bytes read vs the rbd diff).
# Prints the figures and writes the "## snapshot-bench" section of bench/README.md.
#
# Needs root, libvirtd, the test guest (tests/guest), xfsprogs, /usr/bin/time, jq, loop
# devices, and snapio (built with the tests: tests/block/snapshot/snapio).
# WORKDIR (default: the harness work dir under /tmp/virtsnap-tests) must be somewhere
# libvirt-qemu can read; peak use there about 7x the largest size (repositories of the
# copy runs are kept until that size is done: deleting chunk files slows the next run's
# creates on this machine's ext4, see backup-bench.sh). Everything is removed on exit.
# Env: VIRTSNAP (binary; default build-bench/, else build/), SNAPIO, RUNS=3,
#      SIZES="512 4096" (MiB of data), DISK_SIZE=6G, CHANGE_PCT=5, RBD=0 (no Ceph part), NO_README=1
#      (print only), RESULTS=DIR (keep the raw results and JSON there), REPORT_FROM=DIR
#      (measure nothing: the report again from a RESULTS directory).
# Run it under the machine-wide lock: `sudo flock /tmp/vs-integration.lock bench/snapshot-bench.sh`.
set -euo pipefail
VS_TEST_NAME=snapshot-bench
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$BENCH_DIR/../tests/lib/harness.sh"
. "$BENCH_DIR/lib.sh"
export BENCH_DIR

RUNS=${RUNS:-3}
SIZES=${SIZES:-512 4096}
DISK_SIZE=${DISK_SIZE:-6G}
README=$VS_SOURCE_ROOT/bench/README.md
T_START=$(date +%s)
LOAD_START=$(cut -d" " -f1-3 /proc/loadavg)

record() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >> "$RES"; }
data_bytes() { qemu-img map -U --output=json "$1" | jq '[.[] | select(.data) | .length] | add'; }
disk_now() { virsh domblklist "$DOM" --details | awk '$3 == "vda" { print $4 }'; }

# ---------------------------------------------------------------- one size

# backup KEY RUN [ARGS...]: one virtsnap backup into a fresh repository, its figures recorded
backup() {
  local key=$1 run=$2 p=$W/$S.$1.$2 repo=${BACKUP_REPO:-$W/repo.$S.$1.$2} init=--init
  shift 2
  [ ! -d "$repo" ] || init=
  drop_caches
  measure "$p" "$VIRTSNAP" backup --repo "$repo" $init --state-dir "$STATE" --json "$@" "$DOM"
  [ "$M_RC" = 0 ] || vs_fail "$key backup failed (exit $M_RC): $(tail -n 20 "$p.err")"
  jq -e '.domains[0].ok' "$p.out" >/dev/null || vs_fail "$key backup not ok: $(cat "$p.out")"
  [ "$(disk_now)" = "$DISK" ] || vs_fail "$DOM is on '$(disk_now)', not on $DISK, after $key"
  record "$S" "$key" "$run" "$M_WALL" "$(jq -r '.domains[0].overlay_ms' "$p.out")" \
    "$(jq -r '.domains[0].freeze_ms' "$p.out")" "${M_TREE##*/}" "$M_RSS" \
    "$(jq -r '.domains[0].disks[0].bytes_read' "$p.out")" 0
  vs_log "$S MiB $key #$run: ${M_WALL}s overlay $(jq -r '.domains[0].overlay_ms' "$p.out") ms," \
    "phases $(jq -c '.phases_ms' "$p.out")"
}

# vault KEY RUN REPO BACKUP_KEY: `virtsnap vault` of the backup BACKUP_KEY.RUN made (its
# JSON names the id) in REPO; bytes read from its JSON
vault() {
  local key=$1 run=$2 p=$W/$S.$1.$2 repo=$3 id
  id=$(jq -r .id "$W/$S.$4.$2.out")
  drop_caches
  measure "$p" "$VIRTSNAP" vault --repo "$repo" --json "$id"
  [ "$M_RC" = 0 ] || vs_fail "$key failed (exit $M_RC): $(cat "$p.out") $(tail -n 20 "$p.err")"
  [ "$(jq -r '.disks[0].state' "$p.out")" = vaulted ] || vs_fail "$key: not vaulted: $(cat "$p.out")"
  record "$S" "$key" "$run" "$M_WALL" "" "" "${M_TREE##*/}" "$M_RSS" "$(jq -r '.disks[0].bytes_read' "$p.out")" 0
  vs_log "$S MiB $key #$run: ${M_WALL}s $(jq -c '.disks[0] | [.incremental, .bytes_read, .bytes_changed, .bytes_stored]' "$p.out")"
}

snap() { "$SNAPIO" --reflink "$M" --disk "$DOM/vda" --path "$DISK" "$@"; }

# timed KEY RUN CMD...: CMD measured, its output's fsync (FSYNC_FILES) timed after it
timed() {
  local key=$1 run=$2 p=$W/$S.$1.$2 fs=0
  shift 2
  drop_caches
  # snapio's libraries (glib, librbd, ...) loaded again after the drop: a process's cold
  # start is not the storage operation (virtsnap's own is in the backup and restore rows)
  [ "$1" != "$SNAPIO" ] || "$SNAPIO" --help >/dev/null 2>&1 || true
  measure "$p" "$@"
  [ "$M_RC" = 0 ] || vs_fail "$key failed (exit $M_RC): $(tail -n 20 "$p.err")"
  [ -z "${FSYNC_FILES:-}" ] || fs=$(fsync_time $FSYNC_FILES)
  record "$S" "$key" "$run" "$M_WALL" "" "" "${M_TREE##*/}" "$M_RSS" "" "$fs"
  vs_log "$S MiB $key #$run: ${M_WALL}s + fsync ${fs}s"
}

# restores SUFFIX: from the repository and by clone, RUNS times each, interleaved
restores() {
  local sfx=$1 r out
  for r in $(seq 1 "$RUNS"); do
    out=$W/out.$S.$r; rm -rf "$out"; mkdir -p "$out"
    FSYNC_FILES=$out/$DOM-r-vda.qcow2 timed "repo-restore$sfx" "$r" "$VIRTSNAP" restore \
      --repo "$W/repo.$S.copy.1" --state-dir "$STATE" "$DOM" --as "$DOM-r" --target-dir "$out"
    [ -n "$sfx" ] || [ "$r" != 1 ] || "$VS_GUEST_SRC/verify-backup.sh" "$out/$DOM-r-vda.qcow2" >&2 ||
      vs_fail "the image restored from the repository is not consistent"
    rm -rf "$out"
    FSYNC_FILES=$M/clone-$r.qcow2 timed "clone$sfx" "$r" "$SNAPIO" --reflink "$M" --disk "$DOM/vda" \
      --path "$DISK" clone "$H" "clone-$r.qcow2"
    [ -n "$sfx" ] || [ "$r" != 1 ] || "$VS_GUEST_SRC/verify-backup.sh" "$M/clone-$r.qcow2" >&2 ||
      vs_fail "the clone of $H is not consistent"
    rm -f "$M/clone-$r.qcow2"
  done
}

one_size() {
  local r t0 p
  M=$W/xfs-$S
  truncate -s $((S * 2 + 8192))M "$M.img"
  mkfs.xfs -q -m reflink=1 "$M.img"
  mkdir -p "$M"
  vs_on_exit umount -l "$M"      # before the guest: its cleanup runs after the guest's
  mount -o loop "$M.img" "$M"
  chmod 755 "$M"

  local src=$W/src-$S i n=$(( (S + 255) / 256 ))
  mkdir -p "$src"
  for i in $(seq 1 "$n"); do
    head -c $(( S * 1048576 / n )) /dev/urandom > "$src/blob-$i.bin"
  done
  DISK=$M/disk.qcow2
  t0=$(ns)
  "$VS_GUEST_SRC/mkdisk.sh" "$DISK" "$DISK_SIZE" "$src"
  chmod 644 "$DISK"
  rm -rf "$src"
  echo "$(data_bytes "$DISK") $(filefrag "$DISK" | awk '{ print $2 }')" > "$W/$S.disk"
  vs_log "$S MiB: disk made in $(secs "$t0" "$(ns)") s: data bytes, extents: $(cat "$W/$S.disk")"

  DOM=vst-snapbench-$S-$$
  MEM_MIB=${MEM_MIB:-256} vs_guest_start "$DOM" "$DISK"
  VIRT_TYPE=$(virsh dumpxml "$DOM" | sed -n "s/.*<domain type='\([a-z]*\)'.*/\1/p")

  for r in $(seq 1 "$RUNS"); do
    backup copy "$r"
    backup reflink "$r" --storage-snapshot=reflink
    backup no-copy "$r" --storage-snapshot=reflink --no-copy
    [ "$HAVE_VAULT" = 0 ] || vault vault "$r" "$W/repo.$S.no-copy.$r" no-copy
    timed snapshot "$r" "$SNAPIO" --reflink "$M" --disk "$DOM/vda" --path "$DISK" create "bench-$r-vda"
    snap delete "bench-$r-vda" >/dev/null
  done
  H=$(jq -r '.domains[0].disks[0].snapshot.handle' "$W/$S.no-copy.$RUNS.out")
  [ "$(snap exists "$H")" = yes ] || vs_fail "the no-copy backup's snapshot $H is not there"

  restores ""
  virsh suspend "$DOM" >/dev/null
  restores "-idle"
  virsh resume "$DOM" >/dev/null

  virsh destroy "$DOM" >/dev/null
  for r in $(seq 1 "$RUNS"); do
    FSYNC_FILES=$DISK timed rollback "$r" "$SNAPIO" --reflink "$M" --disk "$DOM/vda" --path "$DISK" rollback "$H"
  done
  t0=$(ns)
  virsh start "$DOM" >/dev/null
  vs_wait_agent "$DOM" 120
  echo "$(secs "$t0" "$(ns)")" > "$W/$S.boot"
  vs_gexec "$DOM" 'tail -n 1 /data/records.log' >/dev/null ||
    vs_fail "the guest booted from the rolled-back disk has no records"
  vs_log "$S MiB: the rolled-back guest answers $(cat "$W/$S.boot") s after start"

  _vs_domain_remove "$DOM"
  rm -rf "$W"/repo."$S".*
}

# rbd_size: the same disk, copied into an RBD image of a single-node Ceph (memstore: the data
# in RAM), under a second guest: copy vs --storage-snapshot=rbd vs --no-copy, and the rbd
# snapshot alone. Any failure is recorded as the reason (RBD_NOTE), not fatal: the reflink
# figures stand on their own.
rbd_size() {
  local CD=$W/ceph-$S img=vsb-$S r uuid out
  rbd_why() { RBD_NOTE="${RBD_NOTE:+$RBD_NOTE; }$S MiB: $*"; vs_log "rbd: $*"; }
  CEPH_RGW=0 CEPH_OSD_BYTES=$(( (S + 1024) * 2 * 1048576 )) "$VS_TARGETS_SRC/ceph-target.sh" start "$CD" \
    > "$W/ceph-$S.log" 2>&1 || { rbd_why "ceph-target.sh start failed: $(tail -n 3 "$W/ceph-$S.log")"; return 0; }
  vs_on_exit "$VS_TARGETS_SRC/ceph-target.sh" stop "$CD"
  . "$CD/ceph.env"
  export CEPH_CONF      # librados (virtsnap's rbd provider) reads it when no conf is named
  out=$(qemu-img convert -O raw "$DISK" "rbd:$CEPH_POOL/$img:conf=$CEPH_CONF" 2>&1) ||
    { rbd_why "qemu-img convert into rbd failed: $out"; return 0; }
  printf "<secret ephemeral='no' private='yes'><usage type='ceph'><name>vst-snapbench-%s-%s</name></usage></secret>" \
    "$S" "$$" > "$W/secret-$S.xml"
  uuid=$(virsh secret-define "$W/secret-$S.xml" | awk '{ print $2 }')
  vs_on_exit virsh secret-undefine "$uuid"
  virsh secret-set-value "$uuid" "$CEPH_KEY" >/dev/null
  DOM=vst-snapbench-rbd-$S-$$
  DISK=$CEPH_POOL/$img
  VS_VDA_XML="<disk type='network' device='disk'><driver name='qemu' type='raw' cache='none'/>
    <source protocol='rbd' name='$DISK'><host name='${CEPH_MON%:*}' port='${CEPH_MON##*:}'/></source>
    <auth username='$CEPH_CLIENT'><secret type='ceph' uuid='$uuid'/></auth>
    <target dev='vda' bus='virtio'/></disk>" MEM_MIB=${MEM_MIB:-256} vs_guest_start "$DOM" "$W/unused.img"
  local copy_ok=1
  for r in $(seq 1 "$RUNS"); do
    # the copy backup, tried each run until it fails once (the reason recorded)
    [ "$copy_ok" = 0 ] || ( backup rbd-copy "$r" ) || {
      copy_ok=0
      rbd_why "today's copy backup of the rbd disk (the yardstick) failed, so the 20x comparison on RBD could not be made: $(tail -n 2 "$W/$S.rbd-copy.$r.err" | tr '\n' ' ')"; }
    ( backup rbd "$r" --storage-snapshot=rbd ) || { rbd_why "--storage-snapshot=rbd failed: $(jq -r '.domains[0].error' "$W/$S.rbd.$r.out" 2>/dev/null) $(tail -n 3 "$W/$S.rbd.$r.err" | tr '\n' ' ')"; break; }
    ( backup rbd-no-copy "$r" --storage-snapshot=rbd --no-copy ) || { rbd_why "--no-copy on rbd failed: $(tail -n 3 "$W/$S.rbd-no-copy.$r.err" | tr '\n' ' ')"; break; }
    [ "$HAVE_VAULT" = 0 ] || ( vault rbd-vault "$r" "$W/repo.$S.rbd-no-copy.$r" rbd-no-copy ) ||
      { rbd_why "vault of an rbd --no-copy backup failed: $(tail -n 3 "$W/$S.rbd-vault.$r.err" | tr '\n' ' ')"; break; }
    ( timed rbd-snapshot "$r" "$SNAPIO" --rbd --kind rbd --disk "$DOM/vda" --rbd-pool "$CEPH_POOL" \
        --rbd-image "$img" --rbd-conf "$CEPH_CONF" create "bench-$r" ) || { rbd_why "snapio --rbd create failed"; break; }
  done
  # an incremental vault: the guest changes CHANGE_PCT of the data (new random data, synced),
  # a --no-copy backup into the last vaulted repository, its vault reads the rbd diff only
  if [ "$HAVE_VAULT" = 1 ] && [ -f "$W/$S.rbd-vault.$RUNS.out" ]; then
    local mib=$(( S * ${CHANGE_PCT:-5} / 100 ))
    vs_gexec "$DOM" "dd if=/dev/urandom of=/data/change bs=1M count=$mib conv=fsync 2>/dev/null" >/dev/null
    echo $(( mib * 1048576 )) > "$W/$S.changed"
    ( BACKUP_REPO=$W/repo.$S.rbd-no-copy.$RUNS backup rbd-no-copy-inc 1 --storage-snapshot=rbd --no-copy &&
      vault rbd-vault-inc 1 "$W/repo.$S.rbd-no-copy.$RUNS" rbd-no-copy-inc ) ||
      rbd_why "the incremental vault on rbd failed: $(tail -n 3 "$W/$S.rbd-vault-inc.1.err" 2>/dev/null | tr '\n' ' ')"
  fi
  _vs_domain_remove "$DOM"
  "$VS_TARGETS_SRC/ceph-target.sh" stop "$CD" >/dev/null 2>&1 || true
  rm -rf "$CD" "$W"/repo."$S".rbd*
}

if [ -n "${REPORT_FROM:-}" ]; then
  # the report again from a run's kept results (RESULTS=DIR), e.g. after a change to it
  W=$(cd "$REPORT_FROM" && pwd); RES=$W/results.tsv
  . "$W/meta.env"
  export RES W
else
  vs_require_root
  bench_find_virtsnap build-bench build
  for b in build-bench build; do
    [ -n "${SNAPIO:-}" ] || [ ! -x "$VS_SOURCE_ROOT/$b/tests/block/snapshot/snapio" ] ||
      SNAPIO=$VS_SOURCE_ROOT/$b/tests/block/snapshot/snapio
  done
  [ -x "${SNAPIO:-}" ] || vs_fail "no snapio: ninja -C build-bench, or set SNAPIO"
  [ -x /usr/bin/time ] || vs_fail "/usr/bin/time missing: apt-get install time"
  command -v jq >/dev/null || vs_fail "jq missing: apt-get install jq"
  command -v mkfs.xfs >/dev/null || vs_fail "mkfs.xfs missing: apt-get install xfsprogs"
  [ -e /dev/loop-control ] || vs_fail "no loop devices"
  vs_libvirt_up

  bench_workdir snapshot-bench "${1:-}"
  RES=$W/results.tsv     # size key run wall_s overlay_ms freeze_ms cpu_s rss_kb bytes_read fsync_s
  : > "$RES"
  STATE=$W/state
  HAVE_VAULT=1
  VAULT=""
  "$VIRTSNAP" vault --help >/dev/null 2>&1 || {
    HAVE_VAULT=0; VAULT="not measured: vault not on main (\`virtsnap vault\` is not a command of this binary)"; }

  for S in $SIZES; do
    one_size
    [ "${RBD:-1}" = 0 ] || rbd_size
    umount "$M"; rm -f "$M.img"
  done


  # ---------------------------------------------------------------- report

  T_TOTAL=$(( $(date +%s) - T_START ))
  export RES RUNS SIZES DISK_SIZE README VAULT T_TOTAL W VIRT_TYPE
  export LIBVIRT_V=$(libvirtd --version | awk '{ print $NF }')
  export QEMU_V=$(qemu-system-x86_64 --version | sed -n '1s/.*version \([^ ]*\).*/\1/p')
  export CPU=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | sed -n 1p)
  export OS=$(. /etc/os-release && echo "$PRETTY_NAME")
  export XFS_V=$(mkfs.xfs -V | awk '{ print $NF }')
  export GIT_V=$(git -C "$VS_SOURCE_ROOT" describe --always --dirty 2>/dev/null || echo "?")
  export NPROC=$(nproc) KERNEL=$(uname -r) DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
  export LOADAVG="$LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end (other jobs share the machine)"
  export RBD_NOTE=${RBD_NOTE:-}
  CHANGE_PCT=${CHANGE_PCT:-5}
  declare -p RUNS SIZES DISK_SIZE CHANGE_PCT VAULT T_TOTAL VIRT_TYPE LIBVIRT_V QEMU_V CPU OS XFS_V GIT_V NPROC KERNEL \
    DATE LOADAVG RBD_NOTE | sed 's/^declare -[a-z-]* /export /' > "$W/meta.env"
  if [ -n "${RESULTS:-}" ]; then
    mkdir -p "$RESULTS"
    cp "$RES" "$W"/*.disk "$W"/*.boot "$W"/*.changed "$W"/*.out "$W/meta.env" "$RESULTS"/ 2>/dev/null || true
  fi
fi
export README
/usr/bin/python3 - <<'PY'
import os, sys, statistics as st
E = os.environ
rows = {}
for line in open(E["RES"]):
    f = line.rstrip("\n").split("\t")
    num = lambda v: float(v) if v not in ("", "null") else None
    rows.setdefault((int(f[0]), f[1]), []).append(dict(run=f[2], wall=float(f[3]), overlay=num(f[4]),
        freeze=num(f[5]), cpu=float(f[6] or 0), rss=int(f[7] or 0), read=num(f[8]), fsync=float(f[9] or 0)))
SIZES = [int(s) for s in E["SIZES"].split()]
BIG, SMALL = max(SIZES), min(SIZES)

def med(xs): return st.median(xs)
def rng(xs, fmt):
    return (fmt % med(xs)) + ("" if len(xs) < 2 else " [" + (fmt % min(xs)) + "-" + (fmt % max(xs)) + "]")
def vals(s, key, field): return [x[field] for x in rows.get((s, key), []) if x[field] is not None]
def total(s, key): return [x["wall"] + x["fsync"] for x in rows.get((s, key), [])]
def m(s, key, field): v = vals(s, key, field); return med(v) if v else float("nan")
def mt(s, key): v = total(s, key); return med(v) if v else float("nan")
def disk(s):
    d = open(os.path.join(E["W"], "%d.disk" % s)).read().split()
    return int(d[0]), d[1]
def boot(s):
    try: return float(open(os.path.join(E["W"], "%d.boot" % s)).read())
    except (OSError, ValueError): return float("nan")

btable = ["| backup | " + " | ".join("%d MiB: overlay_ms, median [range] | %d MiB: wall s" % (s, s) for s in SIZES)
          + " | freeze_ms (all sizes) | CPU s at %d MiB | peak RSS MiB at %d MiB |" % (BIG, BIG),
          "|" + "---|" * (2 * len(SIZES) + 4)]
for key, label in (("copy", "copy backup (no --storage-snapshot): the overlay spans the copy"),
                   ("reflink", "`--storage-snapshot=reflink` (copy read from the snapshot)"),
                   ("no-copy", "`--storage-snapshot=reflink --no-copy`"),
                   ("rbd-copy", "RBD disk: copy backup (no --storage-snapshot)"),
                   ("rbd", "RBD disk: `--storage-snapshot=rbd`"),
                   ("rbd-no-copy", "RBD disk: `--storage-snapshot=rbd --no-copy`")):
    if not any((s, key) in rows for s in SIZES): continue
    cells = []
    for s in SIZES:
        cells += [rng(vals(s, key, "overlay"), "%.0f"), rng(vals(s, key, "wall"), "%.2f")]
    fz = [v for s in SIZES for v in vals(s, key, "freeze")]
    btable.append("| %s | %s | %s | %s | %s |" % (label, " | ".join(cells), rng(fz, "%.0f"),
                  rng(vals(BIG, key, "cpu"), "%.1f"), rng([r / 1024 for r in vals(BIG, key, "rss")], "%.1f")))

rtable = ["| operation | " + " | ".join("%d MiB: s, median [range]" % s for s in SIZES) + " |",
          "|" + "---|" * (len(SIZES) + 1)]
for key, label in (("snapshot", "reflink snapshot of the running guest's disk alone (`snapio create`)"),
                   ("repo-restore", "`virtsnap restore --as NEW --target-dir DIR` from the copy backup's repository, + fsync; guest running"),
                   ("repo-restore-idle", "the same, guest paused (cores idle)"),
                   ("clone", "clone of the no-copy backup's snapshot (`snapio clone`), + fsync; guest running"),
                   ("clone-idle", "the same, guest paused (cores idle)"),
                   ("rollback", "rollback of the disk to that snapshot (`snapio rollback`), + fsync; guest shut off"),
                   ("rbd-snapshot", "RBD: an rbd snapshot of the running guest's image alone (`snapio --rbd create`)")):
    if not any((s, key) in rows for s in SIZES): continue
    rtable.append("| %s | %s |" % (label, " | ".join(rng(total(s, key), "%.2f") for s in SIZES)))
rtable.append("| boot of the rolled-back guest until its agent answers (TCG; once) | %s |" %
              " | ".join("%.1f" % boot(s) for s in SIZES))

ratios = []
for s in SIZES:
    c, r, n = m(s, "copy", "overlay"), m(s, "reflink", "overlay"), m(s, "no-copy", "overlay")
    ratios.append("- %d MiB: copy %.0f ms / reflink %.0f ms = %.1fx shorter; / no-copy %.0f ms = %.1fx; "
                  "the reflink alone (snapio create) %.0f ms; repository restore %.2f s / clone %.2f s = %.0fx, "
                  "/ rollback %.2f s = %.0fx" % (s, c, r, c / r, n, c / n, 1000 * mt(s, "snapshot"),
                  mt(s, "repo-restore"), mt(s, "clone"), mt(s, "repo-restore") / mt(s, "clone"),
                  mt(s, "rollback"), mt(s, "repo-restore") / mt(s, "rollback")))

import json
def phases(s, key):
    got = {}
    for x in rows.get((s, key), []):
        try: ph = json.load(open(os.path.join(E["W"], "%d.%s.%s.out" % (s, key, x["run"]))))["phases_ms"]
        except (OSError, ValueError, KeyError): continue
        for k, v in ph.items(): got.setdefault(k, []).append(v)
    return ", ".join("%s %.0f" % (k, med(v)) for k, v in got.items())
where = []
for key, label in (("no-copy", "reflink --no-copy"), ("rbd-no-copy", "rbd --no-copy"), ("reflink", "reflink")):
    for s in SIZES:
        ph = phases(s, key)
        if ph:
            where.append("- %s, %d MiB: wall %.2f s; %s; overlay_ms %.0f; the %s snapshot alone, measured apart by "
                         "snapio (its process start and, for rbd, its cluster connection included): %.0f ms" % (label, s, m(s, key, "wall"), ph, m(s, key, "overlay"), label.split()[0],
                         1000 * mt(s, "rbd-snapshot" if key.startswith("rbd") else "snapshot")))

def vjson(s, key, run):
    try: return json.load(open(os.path.join(E["W"], "%d.%s.%s.out" % (s, key, run))))["disks"][0]
    except (OSError, ValueError, KeyError, IndexError): return None
def mbs(s, key): return [x["read"] / x["wall"] / 1e6 for x in rows.get((s, key), []) if x["read"]]
vtable = []
if any((s, "vault") in rows for s in SIZES):
    vtable = ["| path | " + " | ".join("%d MiB: wall s | %d MiB: MB/s read" % (s, s) for s in SIZES) + " |",
              "|" + "---|" * (2 * len(SIZES) + 1)]
    for key, label in (("copy", "copy backup of the running guest (today's copy path; the backup's bytes_read over its wall time)"),
                       ("vault", "`virtsnap vault` of a reflink `--no-copy` backup (full: a fresh repository)"),
                       ("rbd-vault", "`virtsnap vault` of an rbd `--no-copy` backup (full: a fresh repository)")):
        if not any((s, key) in rows for s in SIZES): continue
        vtable.append("| %s | %s |" % (label, " | ".join("%s | %s" % (rng(vals(s, key, "wall"), "%.2f"),
                      rng(mbs(s, key), "%.0f")) for s in SIZES)))

goals = []
for pv, copy, snapk, label in (("reflink", "copy", "snapshot", "reflink"), ("rbd", "rbd-copy", "rbd-snapshot", "rbd")):
    if (BIG, pv) not in rows or (SMALL, pv) not in rows: continue
    c, r = m(BIG, copy, "overlay"), m(BIG, pv, "overlay")
    if (BIG, copy) not in rows:
        goals.append("- the guest's time on an overlay with `--storage-snapshot=%s` at least 20x shorter than the copy "
                     "backup's at %d MiB: **not measured** (%.0f ms; today's copy backup of this disk failed: see RBD "
                     "below)" % (label, BIG, r))
    else: goals.append("- the guest's time on an overlay with `--storage-snapshot=%s` at least 20x shorter than the copy "
                 "backup's at %d MiB: **%s** (%.0f ms vs %.0f ms median: %.1fx)" % (
        label, BIG, "met" if c >= 20 * r else "NOT met", r, c, c / r))
    for key in (pv, pv.replace("reflink", "") + ("-no-copy" if pv == "rbd" else "no-copy")):
        a, b = m(SMALL, key, "overlay"), m(BIG, key, "overlay")
        sa, sb = 1000 * mt(SMALL, snapk), 1000 * mt(BIG, snapk)
        va, vb = vals(SMALL, key, "overlay"), vals(BIG, key, "overlay")
        why = ""
        if b >= 1.2 * a:
            why = ("; %+.0f ms of the %+.0f ms is the %s itself%s" % (
                sb - sa, b - a, label, ", the qcow2 file having %s extents instead of %s" % (disk(BIG)[1], disk(SMALL)[1])
                if pv == "reflink" else "") +
                ("; the runs' ranges overlap (%.0f-%.0f ms vs %.0f-%.0f ms): the growth is within their spread"
                 % (min(va), max(va), min(vb), max(vb)) if max(va) >= min(vb) else ""))
        goals.append("- %s overlay_ms grows by less than 20%% from %d to %d MiB: **%s** (%s ms to %s ms: %+.0f%%; "
                     "the %s snapshot alone, measured apart, %.0f ms to %.0f ms, %+.0f ms%s)" % (
            "`--storage-snapshot=%s`" % label + (" --no-copy" if "no-copy" in key else ""), SMALL, BIG,
            "met" if b < 1.2 * a else "NOT met", rng(va, "%.0f"), rng(vb, "%.0f"), 100 * (b / a - 1), label, sa, sb,
            sb - sa, why))
    nk = "no-copy" if pv == "reflink" else "rbd-no-copy"
    nc = [m(s, nk, "wall") for s in SIZES]
    goals.append("- `--no-copy` (%s) backup wall time under 1.5 s at either size: **%s** (%s)" % (
        label, "met" if max(nc) < 1.5 else "NOT met", ", ".join("%d MiB %.2f s" % (s, w) for s, w in zip(SIZES, nc))))
for key, label in (("rollback", "rollback"), ("clone", "`--as` clone")):
    t = [mt(s, key) for s in SIZES]
    goals.append("- restore by %s under 3 s at either size, the storage operation alone (`restore --from-snapshot` "
                 "is not on main): **%s** (%s; from the repository %s); guest bootable: %s" % (
        label, "met" if max(t) < 3 else "NOT met",
        ", ".join("%d MiB %.2f s" % (s, x) for s, x in zip(SIZES, t)),
        ", ".join("%d MiB %.2f s" % (s, mt(s, "repo-restore")) for s in SIZES),
        "the guest started on the rolled-back disk and its writer went on (%s s to its agent under TCG, not in the 3 s)"
        % "/".join("%.1f" % boot(s) for s in SIZES) if key == "rollback" else
        "the first clone of each size checked by tests/guest/verify-backup.sh (fsck clean, journal clean, every record valid)"))
if E.get("VAULT"):
    goals.append("- `vault` throughput at least 90%% of the copy path; incremental vault on rbd: %s" % E["VAULT"])
else:
    for s in SIZES:
        if not mbs(s, "vault"): continue
        v, c = med(mbs(s, "vault")), med(mbs(s, "copy"))
        goals.append("- `vault` throughput at least 90%% of today's copy path, %d MiB (reflink, same disk): **%s** "
                     "(%.0f vs %.0f MB/s median: %.0f%%)" % (s, "met" if v >= 0.9 * c else "NOT met", v, c, 100 * v / c))
    for s in SIZES:
        if mbs(s, "rbd-vault"):
            goals.append("- (rbd, %d MiB: no copy path to compare with, see RBD below) vault of the rbd snapshot %.0f MB/s "
                         "median, %.0f%% of the reflink copy backup's %.0f MB/s on the same data" % (
                s, med(mbs(s, "rbd-vault")), 100 * med(mbs(s, "rbd-vault")) / med(mbs(s, "copy")), med(mbs(s, "copy"))))
    for s in SIZES:
        d = vjson(s, "rbd-vault-inc", 1)
        if not d: continue
        try: wrote = int(open(os.path.join(E["W"], "%d.changed" % s)).read())
        except (OSError, ValueError): wrote = 0
        rd, ch = d.get("bytes_read") or 0, d.get("bytes_changed") or 0
        goals.append("- incremental vault on rbd after the guest wrote %.0f MiB (%s%% of the data), %d MiB: reads at most "
                     "1.2x the changed bytes: **%s** (incremental: %s; read %.1f MiB, the rbd diff's changed bytes %.1f "
                     "MiB: %.2fx; %.2fx what the guest wrote; %.1f s)" % (
            wrote / 1048576, E.get("CHANGE_PCT", "5"), s, "met" if d.get("incremental") and rd <= 1.2 * ch else "NOT met",
            "yes" if d.get("incremental") else "no (%s)" % d.get("full_reason"), rd / 1048576, ch / 1048576,
            rd / ch if ch else float("nan"), rd / wrote if wrote else float("nan"), m(s, "rbd-vault-inc", "wall")))

machine = ("%s; nproc %s; CPU %s; kernel %s; libvirt %s; QEMU %s (guest domain type '%s', 1 vCPU, 256 MiB); "
           "xfsprogs %s; virtsnap git %s; load average %s" % (E["OS"], E["NPROC"], E["CPU"], E["KERNEL"],
           E["LIBVIRT_V"], E["QEMU_V"], E["VIRT_TYPE"], E["XFS_V"], E["GIT_V"], E["LOADAVG"]))
disks = "; ".join("%d MiB: %d bytes allocated, %s extents in the qcow2 file" % ((s,) + disk(s)) for s in SIZES)
sec = "\n".join([
    "## snapshot-bench", "",
    "`bench/snapshot-bench.sh [WORKDIR]` (root; %s runs each, interleaved; whole run %d s). Date: %s." % (
        E["RUNS"], int(E["T_TOTAL"]), E["DATE"]), "",
    "Machine: " + machine + ".", "",
    "Disk: one %s qcow2 data disk (ext4, vda) per size, on a loop-mounted XFS made with `mkfs.xfs -m reflink=1`, "
    "filled offline (mkfs.ext4 -d) with random data before its guest starts: %s. The guest's writer appends ~20 "
    "records/s throughout. Page cache dropped before every run. Repositories on the host's ext4 beside the XFS "
    "image, a fresh one for each backup." % (E["DISK_SIZE"], disks), "",
    "Backups (overlay_ms: from the snapshot onto the overlays until they are committed back, from `backup --json`):", "",
    *btable, "",
    "Restores and storage operations (wall + fsync of the output). `virtsnap restore --from-snapshot` is not on "
    "main (being written on branch snaprestore): the clone and rollback rows are the storage operations themselves, "
    "run by tests/block/snapshot/snapio (the reflink provider's vs_snap_clone / vs_snap_rollback), not a virtsnap "
    "restore; one through virtsnap will add its process start, the libvirt connection and defining or starting the "
    "domain:", "",
    *rtable, "",
    *(["Vault against the copy path (MB/s = bytes read, from the JSON, / wall time; 10^6 bytes/s; page cache "
       "dropped before each):", "", *vtable, ""] if vtable else []),
    "Ratios (medians):", *ratios, "",
    "Where the storage-snapshot backups' time goes (median `phases_ms` from `--json`: prepare = repository, "
    "discovery; freeze = guest agent freeze, snapshot onto the overlays, thaw; copy = the storage snapshot, the "
    "overlays committed, then the copy if any; end; manifest; the rest of the wall time is the process: start, "
    "libvirt connection, exit):", *where, "",
    "Goals (issue 15, Speed):", *goals, "",
    *(["RBD: " + E["RBD_NOTE"] + ".", ""] if E.get("RBD_NOTE") else []),
    "Reproduce: `sudo flock /tmp/vs-integration.lock bench/snapshot-bench.sh [WORKDIR]` from the source root after "
    "`meson setup build-bench && ninja -C build-bench` (env: VIRTSNAP, SNAPIO, RUNS, SIZES, DISK_SIZE, CHANGE_PCT, RBD=0, NO_README=1, "
    "RESULTS, REPORT_FROM). Needs `apt-get install xfsprogs time jq`, loop devices and the test guest (tests/guest); "
    "for the RBD part `apt-get install --no-install-recommends ceph-mon ceph-osd ceph-common qemu-block-extra`.", ""])
print()
print(sec)
if E.get("NO_README") != "1":
    sys.path.insert(0, E["BENCH_DIR"])
    from readme_section import write_section
    write_section(E["README"], "snapshot-bench", sec)
PY
