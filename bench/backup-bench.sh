#!/bin/bash
# backup-bench.sh [WORKDIR] -- virtsnap backup against its peers, in one run, on one
# running guest whose 4 GiB qcow2 data disk holds ~1.5 GiB of data (1 GiB random, 0.5 GiB
# log-like text, several files, written offline with mkfs.ext4 -d):
#
#   virtsnap    `virtsnap backup --repo R --init --json DOM` into a fresh repository
#   qemu-img    quiesced external snapshot (virsh snapshot-create-as --quiesce), then
#               `qemu-img convert -O qcow2 BASE OUT` of the now stable base, then
#               `virsh blockcommit --active --pivot --wait` (the same cycle virtsnap runs)
#   virtnbdbackup  `virtnbdbackup -d DOM -l full -o OUTDIR` (Debian package; pull-mode NBD)
#
# Each tool runs RUNS times (default 3), interleaved, page cache dropped before each run.
# Measured: wall time, MB/s (data bytes and virtual size over wall), peak RSS
# (/usr/bin/time -v, and the peak of the summed RSS of the tool's process tree sampled
# every 100 ms), bytes stored (du -sb), and the freeze window: each tool's own figure
# where it has one, and for all three the longest gap between consecutive records of the
# guest's writer (~20/s) while the tool ran -- the stall as the guest itself saw it.
# Plus once each: qemu-img convert -c, virtnbdbackup -z, and virtsnap on a 16 GiB disk
# with the same data (peak RSS must not grow with the disk). Prints a table and writes
# the "## backup-bench" section of bench/README.md (other sections are kept).
#
# Needs root, libvirtd, the test guest (tests/guest), virtnbdbackup, /usr/bin/time, jq.
# WORKDIR (default: the harness work dir under /tmp/virtsnap-tests) must be somewhere
# libvirt-qemu can read (/tmp, /var/tmp); everything made there is removed on exit.
# Env: VIRTSNAP (binary; default build-bench/, else build/), RUNS=3, RAND_MIB=1024,
#      TEXT_MIB=512, DISK_SIZE=4G, BIG_DISK_SIZE=16G (empty: skip), NO_README=1 (print only),
#      NO_PERF=1 (skip the extra run under perf record that says where virtsnap's time goes),
#      BASELINE=/path/to/an/older/virtsnap (one more row: that binary, interleaved with
#      VIRTSNAP run for run, so that a change is compared under the same load).
set -euo pipefail
VS_TEST_NAME=backup-bench
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$BENCH_DIR/../tests/lib/harness.sh"
. "$BENCH_DIR/lib.sh"
export BENCH_DIR

RUNS=${RUNS:-3}
RAND_MIB=${RAND_MIB:-1024}
TEXT_MIB=${TEXT_MIB:-512}
DISK_SIZE=${DISK_SIZE:-4G}
BIG_DISK_SIZE=${BIG_DISK_SIZE-16G}
README=$VS_SOURCE_ROOT/bench/README.md
T_START=$(date +%s)
LOAD_START=$(cut -d" " -f1-3 /proc/loadavg)

vs_require_root
bench_find_virtsnap build-bench build
[ -x /usr/bin/time ] || vs_fail "/usr/bin/time missing: apt-get install time"
command -v jq >/dev/null || vs_fail "jq missing: apt-get install jq"
command -v virtnbdbackup >/dev/null || vs_fail "virtnbdbackup missing: apt-get install virtnbdbackup"
vs_libvirt_up

bench_workdir backup-bench "${1:-}"
RES=$W/results.tsv          # tool run wall_s rss_kb tree_rss_kb/tree_pss_kb/cpu_s bytes gap_s own_ms fsync_s
: > "$RES"

# ---------------------------------------------------------------- helpers


uptime_guest() { vs_gexec "$DOM" 'cut -d" " -f1 /proc/uptime'; }
# gap_guest UP0 UP1: "GAP@END": the longest gap (s) between consecutive records written in
# [UP0, UP1], and when it ended (s after UP0, guest clock)
gap_guest() {
  vs_gexec "$DOM" "awk -v a=$1 -v b=$2 '\$2 >= a && \$2 <= b { if (p && \$2 - p > m) { m = \$2 - p; e = \$2 - a }; p = \$2 } END { printf \"%.3f@%.1f\", m, e }' /data/records.log"
}

record() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >> "$RES"; }

disk_chain() { virsh domblklist "$DOM" --details | awk '$3 == "vda" { print $4 }'; }
assert_on_disk() {
  [ "$(disk_chain)" = "$DISK" ] || vs_fail "$DOM is on '$(disk_chain)', not on $DISK, after $1"
}

delete_checkpoints() {
  local c
  for c in $(virsh checkpoint-list "$DOM" --name --topological 2>/dev/null | tac); do
    virsh checkpoint-delete "$DOM" "$c" >/dev/null 2>&1 ||
      virsh checkpoint-delete "$DOM" "$c" --metadata >/dev/null 2>&1 || true
  done
  [ -z "$(virsh checkpoint-list "$DOM" --name 2>/dev/null | tr -d '[:space:]')" ] ||
    vs_fail "checkpoints left on $DOM: $(virsh checkpoint-list "$DOM" --name)"
}

# ---------------------------------------------------------------- the data and the guest

SRC=$W/src
vs_log "data: ${RAND_MIB} MiB random + ${TEXT_MIB} MiB log-like text in $SRC"
bench_make_data "$SRC" "$RAND_MIB" "$TEXT_MIB"
du -sh "$SRC" >&2

DOM=vst-bench-$$
DISK=$W/disk.qcow2
t0=$(ns)
"$VS_GUEST_SRC/mkdisk.sh" "$DISK" "$DISK_SIZE" "$SRC"
chmod 644 "$DISK"
vs_log "mkdisk $DISK_SIZE: $(secs "$t0" "$(ns)") s"
BIG=
if [ -n "$BIG_DISK_SIZE" ]; then
  BIG=$W/big.qcow2
  "$VS_GUEST_SRC/mkdisk.sh" "$BIG" "$BIG_DISK_SIZE" "$SRC"
  chmod 644 "$BIG"
fi
rm -rf "$SRC"

data_bytes() { qemu-img map -U --output=json "$1" | jq '[.[] | select(.data) | .length] | add'; }
virt_bytes() { qemu-img info -U --output=json "$1" | jq '.["virtual-size"]'; }
DATA=$(data_bytes "$DISK"); VSIZE=$(virt_bytes "$DISK")
vs_log "disk: virtual $VSIZE bytes, data $DATA bytes"

MEM_MIB=${MEM_MIB:-256} vs_guest_start "$DOM" "$DISK"
vs_on_exit virsh -c "$VS_URI" domjobabort "$DOM"      # a peer's backup job left behind
VIRT_TYPE=$(virsh dumpxml "$DOM" | sed -n "s/.*<domain type='\([a-z]*\)'.*/\1/p")
STATE=$W/state
NBDDIR=$W/nbd; mkdir -p "$NBDDIR"; chmod 1777 "$NBDDIR"   # QEMU binds the socket, writes scratch

# Baseline: the guest's own record gaps with no tool running (TCG guest, host idle).
up0=$(uptime_guest); sleep 10; up1=$(uptime_guest)
BASE_GAP=$(gap_guest "$up0" "$up1"); BASE_GAP=${BASE_GAP%@*}
vs_log "baseline: longest record gap with no tool running: ${BASE_GAP}s"
record baseline 1 0 0 0/0/0 0 "$BASE_GAP" "" 0

# ---------------------------------------------------------------- the tools

run_virtsnap() {  # NAME RUN [BINARY [BACKUP ARGS...]]
  local name=$1 run=$2 p=$W/$1.$2 repo=$W/repo.$1.$2 bin=${3:-$VIRTSNAP} up0 up1 gap own h0 fs
  shift $(($# < 3 ? $# : 3))
  drop_caches
  up0=$(uptime_guest)
  h0=$(date +%s%3N)
  measure "$p" "$bin" backup --repo "$repo" --init --state-dir "$STATE" --json "$@" "$DOM"
  fs=$(fsync_time -f "$repo")   # its manifest commit synced already: what is left
  up1=$(uptime_guest)
  [ "$M_RC" = 0 ] || vs_fail "virtsnap backup failed (exit $M_RC): $(tail -n 20 "$p.err")"
  jq -e '.domains[0].ok' "$p.out" >/dev/null || vs_fail "virtsnap backup not ok: $(cat "$p.out")"
  gap=$(gap_guest "$up0" "$up1")
  # freeze_ms / group_freeze_ms / when the thaw came, s after the start (host clock)
  own=$(jq -r --argjson h0 "$h0" '"\(.domains[0].freeze_ms)/\(.group_freeze_ms)/\((.domains[0].thawed_at_ms - $h0) / 1000)"' "$p.out")
  record "$name" "$run" "$M_WALL" "$M_RSS" "$M_TREE" "$(du -sb "$repo" | cut -f1)" "$gap" "$own" "$fs"
  echo "$(jq -r '.domains[0].disks[0].bytes_read' "$p.out")" > "$p.read"
  vs_log "$name #$run: ${M_WALL}s rss ${M_RSS}K (tree ${M_TREE}K:$(cat "$p.tree.who")) freeze ${own}ms guest gap ${gap}s"
  # Kept until the end: on ext4 without a journal (this machine's), creating a file skips
  # inodes freed in the last ~30 s one by one, so deleting a thousand chunk files here made
  # the next run's creates pay for them (~15% of its CPU in the kernel's recently_deleted,
  # measured with perf) -- a cost of this bench's loop, not of a backup.
  vs_on_exit rm -rf "$repo"
  assert_on_disk "$name"
}

run_qemuimg() {   # NAME RUN [convert options]
  local name=$1 run=$2 p=$W/$1.$2 out=$W/convert.$1.$2.qcow2 ovl=$W/ovl.$1.$2.qcow2
  local up0 up1 gap t0 t1 t2 t3 snap_s cyc_s out_b rc=0 msg fs
  shift 2
  drop_caches
  up0=$(uptime_guest)
  vs_on_exit rm -f "$ovl"
  t0=$(ns)
  msg=$(virsh snapshot-create-as "$DOM" --disk-only --atomic --no-metadata --quiesce \
          --diskspec "vda,snapshot=external,file=$ovl" 2>&1) || vs_fail "snapshot-create-as: $msg"
  t1=$(ns)
  measure "$p" qemu-img convert -O qcow2 "$@" "$DISK" "$out"
  if [ "$M_RC" != 0 ]; then   # the base is in use by QEMU (read-only): retry with force-share
    vs_log "qemu-img convert failed: $(tail -n 3 "$p.err"); retrying with -U"
    measure "$p" qemu-img convert -U -O qcow2 "$@" "$DISK" "$out"
    echo "-U" > "$p.forceshare"
  fi
  [ "$M_RC" = 0 ] || vs_fail "qemu-img convert failed: $(cat "$p.err")"
  fs=$(fsync_time "$out")
  t2=$(ns)
  msg=$(virsh blockcommit "$DOM" vda --active --pivot --wait 2>&1) || vs_fail "blockcommit: $msg"
  rm -f "$ovl"
  t3=$(ns)
  up1=$(uptime_guest)
  gap=$(gap_guest "$up0" "$up1")
  snap_s=$(secs "$t0" "$t1"); cyc_s=$(secs "$t0" "$t3")
  out_b=$(du -sb "$out" | cut -f1)
  # the cycle's time already holds the fsync (taken between convert and commit)
  record "$name" "$run" "$M_WALL" "$M_RSS" "$M_TREE" "$out_b" "$gap" \
    "$(awk -v s="$snap_s" 'BEGIN { printf "%d", s * 1000 }')" "$fs"
  record "$name-cycle" "$run" "$(awk -v c="$cyc_s" -v f="$fs" 'BEGIN { printf "%.3f", c - f }')" "$M_RSS" \
    "$M_TREE" "$out_b" "$gap" "$(awk -v s="$snap_s" 'BEGIN { printf "%d", s * 1000 }')" "$fs"
  vs_log "$name #$run: convert ${M_WALL}s, cycle ${cyc_s}s (snapshot ${snap_s}s, commit $(secs "$t2" "$t3")s) rss ${M_RSS}K guest gap ${gap}s"
  rm -f "$out"
  assert_on_disk "$name"
}

run_vnbd() {      # NAME RUN [virtnbdbackup options]
  local name=$1 run=$2 p=$W/$1.$2 out=$W/vnbd.$1.$2 up0 up1 gap fs
  shift 2
  delete_checkpoints
  drop_caches
  up0=$(uptime_guest)
  measure "$p" virtnbdbackup -d "$DOM" -l full -o "$out" -n \
    -S "$NBDDIR" -f "$NBDDIR/sock.$run" "$@"
  fs=$(fsync_time "$out"/*)
  up1=$(uptime_guest)
  if [ "$M_RC" != 0 ]; then
    cat "$p.err" >&2
    vs_fail "virtnbdbackup failed (exit $M_RC); log: $(ls "$out"/backup.*.log 2>/dev/null)"
  fi
  gap=$(gap_guest "$up0" "$up1")
  record "$name" "$run" "$M_WALL" "$M_RSS" "$M_TREE" "$(du -sb "$out" | cut -f1)" "$gap" "" "$fs"
  vs_log "$name #$run: ${M_WALL}s rss ${M_RSS}K (tree ${M_TREE}K:$(cat "$p.tree.who")) guest gap ${gap}s"
  [ -n "$(ls "$out"/vda.full.data* 2>/dev/null)" ] || vs_fail "virtnbdbackup wrote no vda.full.data in $out"
  rm -rf "$out"
  delete_checkpoints
  assert_on_disk "$name"
}

for r in $(seq 1 "$RUNS"); do
  run_virtsnap virtsnap "$r"
  [ -z "${BASELINE:-}" ] || run_virtsnap virtsnap-baseline "$r" "$BASELINE"
  run_qemuimg qemu-img "$r"
  run_vnbd virtnbdbackup "$r"
done
run_qemuimg qemu-img-c 1 -c
run_vnbd virtnbdbackup-z 1 -z
# What compression costs: the same backup storing its chunks uncompressed (hashing only).
run_virtsnap virtsnap-raw 1 "$VIRTSNAP" --compress=off

# Where virtsnap backup's time goes: one more cold run under perf (cpu-clock samples of the
# process tree: threads, objects, symbols), and how busy the 2 cores were over its wall time
# (samples per 100 ms slice: a slice under half of all cores' worth is mostly waiting).
PERF_NOTE=""
if [ "${NO_PERF:-0}" != 1 ] && command -v perf >/dev/null; then
  drop_caches
  repo=$W/repo.perf
  t0=$(ns)
  if perf record -q -F 499 -o "$W/perf.data" -- "$VIRTSNAP" backup --repo "$repo" --init \
       --state-dir "$STATE" --json "$DOM" >/dev/null 2>"$W/perf.err"; then
    t1=$(ns)
    perf report -i "$W/perf.data" --stdio --no-children --sort comm 2>/dev/null |
      awk '/^ *[0-9.]+%/ && n++ < 6 { printf "%s%s %s", (n > 1 ? ", " : ""), $1, $2 }' > "$W/perf.comm"
    perf report -i "$W/perf.data" --stdio --no-children --sort dso 2>/dev/null |
      awk '/^ *[0-9.]+%/ && n++ < 6 { printf "%s%s %s", (n > 1 ? ", " : ""), $1, $2 }' > "$W/perf.dso"
    perf report -i "$W/perf.data" --stdio --no-children --sort sym 2>/dev/null |
      awk '/^ *[0-9.]+%/ && n++ < 6 { p = $1; $1 = ""; $2 = ""; sub(/^ +/, ""); printf "%s%s %s", (n > 1 ? ", " : ""), p, $0 }' > "$W/perf.sym"
    perf script -i "$W/perf.data" -F time 2>/dev/null | tr -d ' :' |
      awk -v hz=499 -v nc="$(nproc)" -v wall="$(secs "$t0" "$t1")" '
        { s = int($1 * 10); c[s]++; if (!n++) lo = s; hi = s }
        END { for (i = lo; i <= hi; i++) { k++; if (c[i] >= hz / 10 * nc * 0.75) busy++; else if (c[i] < hz / 10 * nc * 0.5) idle++ }
              printf "%.1f s wall, %.1f s of samples (%.0f%% of %d cores over the wall time); of %d 100-ms slices, %d had the cores at least 3/4 busy, %d under half",
                wall, n / hz, 100 * n / hz / wall / nc, nc, k, busy, idle }' > "$W/perf.busy"
    PERF_NOTE="$(cat "$W/perf.busy"). By thread: $(cat "$W/perf.comm"); by object: $(cat "$W/perf.dso"); top symbols: $(cat "$W/perf.sym")."
  else
    PERF_NOTE="perf record failed: $(tail -n 2 "$W/perf.err" | tr '\n' ' ')"
  fi
  rm -rf "$repo" "$W/perf.data"
  assert_on_disk perf
  vs_log "perf: $PERF_NOTE"
fi
export PERF_NOTE
CACHED_NOTE="page cache dropped before every run (sync; echo 3 > /proc/sys/vm/drop_caches)"

if [ -n "$BIG" ]; then
  # Same data on a 16 GiB disk, one more guest (the first one is stopped first).
  _vs_domain_remove "$DOM"
  DOM=vst-bench-big-$$; DISK=$BIG
  BIG_DATA=$(data_bytes "$BIG"); BIG_VSIZE=$(virt_bytes "$BIG")
  MEM_MIB=${MEM_MIB:-256} vs_guest_start "$DOM" "$BIG"
  run_virtsnap virtsnap-16g 1
else
  BIG_DATA=0; BIG_VSIZE=0
fi

# ---------------------------------------------------------------- report

T_TOTAL=$(( $(date +%s) - T_START ))
LIBVIRT_V=$(libvirtd --version | awk '{ print $NF }')
QEMU_V=$(qemu-system-x86_64 --version | sed -n '1s/.*version \([^ ]*\).*/\1/p')
VNBD_V=$(virtnbdbackup -V 2>&1 | tail -n1)
CPU=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | sed -n 1p)
OS=$(. /etc/os-release && echo "$PRETTY_NAME")
VS_V=$("$VIRTSNAP" --version 2>/dev/null | head -n1 || echo "?")
GIT_V=$(git -C "$VS_SOURCE_ROOT" describe --always --dirty 2>/dev/null || echo "?")
FORCESHARE=$(ls "$W"/*.forceshare >/dev/null 2>&1 && echo "yes (-U needed)" || echo "no")
for f in "$W"/virtsnap.*.read; do cat "$f"; done | sort -n | sed -n 1p > "$W/vs_read" || true

BASELINE_V=""
[ -z "${BASELINE:-}" ] || BASELINE_V="$("$BASELINE" --version 2>/dev/null | head -n1)${BASELINE_GIT:+, git $BASELINE_GIT}"
export BASELINE_V
export RES DATA VSIZE BIG_DATA BIG_VSIZE RUNS CACHED_NOTE T_TOTAL LIBVIRT_V QEMU_V VNBD_V CPU OS \
  VS_V GIT_V FORCESHARE VIRT_TYPE BASE_GAP README DISK_SIZE BIG_DISK_SIZE
export VS_READ=$(cat "$W/vs_read" 2>/dev/null || echo 0)
export NPROC=$(nproc) KERNEL=$(uname -r) DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
export LOADAVG="$LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end (other jobs share the machine)"
/usr/bin/python3 - <<'PY'
import os, sys, statistics as st
E = os.environ
rows = {}
for line in open(E["RES"]):
    f = line.rstrip("\n").split("\t")
    t = (f[4].split("/") + ["0", "0", "0"])[:3]
    rows.setdefault(f[0], []).append(dict(run=f[1], wall=float(f[2]), rss=int(f[3] or 0),
        tree=int(t[0] or 0), pss=int(t[1] or 0), cpu=float(t[2] or 0), bytes=int(f[5] or 0),
        gap=float(f[6].split("@")[0] or 0), gap_at=(f[6].split("@") + [""])[1], own=f[7],
        fsync=float(f[8] or 0)))
    rows[f[0]][-1]["total"] = rows[f[0]][-1]["wall"] + rows[f[0]][-1]["fsync"]
DATA, VSIZE = int(E["DATA"]), int(E["VSIZE"])
BIG_DATA, BIG_VSIZE = int(E["BIG_DATA"]), int(E["BIG_VSIZE"])
MiB = 1048576

def med(xs): return st.median(xs)
def rng(xs, fmt):
    return (fmt % med(xs)) + ("" if len(xs) < 2 else " [" + (fmt % min(xs)) + "-" + (fmt % max(xs)) + "]")
def own(r):
    vals = []
    for x in r:
        try: vals.append(float(x["own"].split("/")[0]))
        except ValueError: pass
    return vals

labels = [
    ("virtsnap", "virtsnap backup (whole: freeze, snapshot, copy, commit)", DATA, VSIZE),
    ("virtsnap-baseline", "virtsnap backup, BASELINE binary (%s), interleaved with the row above" % E.get("BASELINE_V", ""), DATA, VSIZE),
    ("qemu-img", "qemu-img convert of the stable base (convert only)", DATA, VSIZE),
    ("qemu-img-cycle", "qemu-img cycle (snapshot --quiesce + convert + blockcommit)", DATA, VSIZE),
    ("virtnbdbackup", "virtnbdbackup -l full (defaults)", DATA, VSIZE),
    ("qemu-img-c", "qemu-img convert -c (compressed; convert only)", DATA, VSIZE),
    ("virtnbdbackup-z", "virtnbdbackup -l full -z (lz4)", DATA, VSIZE),
    ("virtsnap-raw", "virtsnap backup --compress=off (chunks hashed, stored uncompressed)", DATA, VSIZE),
    ("virtsnap-16g", "virtsnap backup, %s disk, same data" % E["BIG_DISK_SIZE"], BIG_DATA, BIG_VSIZE),
]
hdr = ("| tool | runs | wall s, median [range] | + fsync of the output s | data MB/s | virtual MB/s | CPU s (user+sys) "
       "| peak RSS MiB (time -v) | peak RSS MiB, process tree: sum RSS / sum PSS | stored MiB "
       "| own freeze ms | guest-seen max gap ms |")
out = [hdr, "|" + "---|" * 12]
for key, label, data, vsize in labels:
    r = rows.get(key)
    if not r: continue
    w = [x["wall"] for x in r]
    o = own(r)
    out.append("| %s | %d | %s | %s | %s | %s | %s | %s | %s / %s | %s | %s | %s |" % (
        label, len(r), rng(w, "%.1f"), rng([x["fsync"] for x in r], "%.2f"),
        rng([data / x / 1e6 for x in w], "%.0f"), rng([vsize / x / 1e6 for x in w], "%.0f"),
        rng([x["cpu"] for x in r], "%.1f"),
        rng([x["rss"] / 1024 for x in r], "%.1f"), rng([x["tree"] / 1024 for x in r], "%.1f"),
        rng([x["pss"] / 1024 for x in r], "%.1f"),
        rng([x["bytes"] / MiB for x in r], "%.0f"),
        rng(o, "%.0f") if o else "n/a (none reported)",
        rng([x["gap"] * 1000 for x in r], "%.0f")))
table = "\n".join(out)

def m(key, field): return med([x[field] for x in rows[key]]) if key in rows else float("nan")
vs_w, vs_r = m("virtsnap", "wall"), m("virtsnap", "rss")
ratios = []
for key, label in (("virtsnap-baseline", "the BASELINE virtsnap (interleaved, same load)"),
                   ("qemu-img", "qemu-img convert alone"), ("qemu-img-cycle", "qemu-img whole cycle"),
                   ("virtnbdbackup", "virtnbdbackup full (defaults)"),
                   ("qemu-img-c", "qemu-img convert -c (compresses, as virtsnap does; 1 run)"),
                   ("virtnbdbackup-z", "virtnbdbackup -z (lz4; 1 run)")):
    if key not in rows: continue
    pw, pr, pt, pb = m(key, "wall"), m(key, "rss"), m(key, "tree"), m(key, "bytes")
    ratios.append("- vs %s: wall %.2fx (virtsnap/peer; <1 = virtsnap faster), MB/s %.2fx, "
                  "peak RSS (time -v) %.1f vs %.1f MiB (%.2fx), process tree %.1f vs %.1f MiB, "
                  "stored %.2fx" % (label, vs_w / pw, pw / vs_w, vs_r / 1024, pr / 1024, vs_r / pr,
                                    m("virtsnap", "tree") / 1024, pt / 1024, m("virtsnap", "bytes") / pb))

def when(key):
    r = rows.get(key, [])
    return ", ".join("%.0f ms ending %s s in" % (x["gap"] * 1000, x["gap_at"]) + (
        " (thaw at %.1f s)" % float(x["own"].split("/")[2]) if x["own"].count("/") == 2 else "") for x in r)
gapnote = ("Where each run's longest guest gap fell (s after the tool started, guest clock; virtsnap's "
           "thaw time from its JSON, host clock, same origin within ~0.2 s): virtsnap: %s; qemu-img "
           "cycle: %s; virtnbdbackup: %s." % (when("virtsnap"), when("qemu-img"), when("virtnbdbackup")))

goals = []
peers = [(k, l) for k, l in (("qemu-img-cycle", "the qemu-img cycle (snapshot + convert + commit)"),
                             ("qemu-img", "qemu-img convert alone"),
                             ("virtnbdbackup", "virtnbdbackup full"),
                             ("qemu-img-c", "qemu-img convert -c (same work class: compressed output)")) if k in rows]
vs_t = m("virtsnap", "total")
for k, l in peers:
    pw, pt = m(k, "wall"), m(k, "total")
    goals.append("- faster than %s, to a backup on disk (wall + fsync of the output): **%s** (%.1f s vs %.1f s "
                 "median: virtsnap %s; wall alone %.1f s vs %.1f s)" % (
        l, "met" if vs_t < pt else "NOT met", vs_t, pt,
        "%.1fx faster" % (pt / vs_t) if vs_t < pt else "%.1fx slower (%.1f s more)" % (vs_t / pt, vs_t - pt),
        vs_w, pw))
if "virtsnap-raw" in rows and "qemu-img-cycle" in rows:
    rt, ct = m("virtsnap-raw", "total"), m("qemu-img-cycle", "total")
    goals.append("- (not a goal: what compression costs) virtsnap --compress=off, 1 run, against the qemu-img "
                 "cycle: %.1f s vs %.1f s (%s), storing %.0f MiB against the default's %.0f MiB" % (
        rt, ct, "faster" if rt < ct else "slower", m("virtsnap-raw", "bytes") / MiB, m("virtsnap", "bytes") / MiB))
big = [k for k in ("virtsnap", "virtsnap-16g") if k in rows]
mx = lambda f: max(x[f] for k in big for x in rows[k]) / 1024
goals.append("- peak RSS under 64 MiB whatever the disk size: the virtsnap process **%s** (max %.1f MiB; "
             "%s disk median %.1f MiB%s); counting its helper processes (qemu-img map; a qemu-nbd only for what cannot be read from the files) **%s** by summed "
             "RSS (max %.1f MiB), **%s** by summed PSS (max %.1f MiB)" % (
    "met" if mx("rss") < 64 else "NOT met", mx("rss"), E["DISK_SIZE"], vs_r / 1024,
    ", %s disk %.1f MiB: no growth with size" % (E["BIG_DISK_SIZE"], m("virtsnap-16g", "rss") / 1024)
    if "virtsnap-16g" in rows else "",
    "met" if mx("tree") < 64 else "NOT met", mx("tree"), "met" if mx("pss") < 64 else "NOT met", mx("pss")))
o = own(rows["virtsnap"])
g = [x["gap"] * 1000 for x in rows["virtsnap"]]
goals.append("- freeze window under 100 ms median (one-disk guest): **%s** by virtsnap's own freeze_ms "
             "(median %.0f ms; `virsh snapshot-create-as --quiesce` alone took %.0f ms median); guest-seen "
             "longest record gap median %.0f ms (%s; baseline with no tool running: %.0f ms, the writer's "
             "own cadence under TCG)" % (
    "met" if o and med(o) < 100 else "NOT met", med(o) if o else float("nan"),
    med(own(rows["qemu-img"])) if "qemu-img" in rows else float("nan"), med(g),
    "under 100 ms" if med(g) < 100 else "over 100 ms", float(E["BASE_GAP"]) * 1000))

machine = ("%s; nproc %s; CPU %s; kernel %s; libvirt %s; QEMU %s (guest domain type '%s', 1 vCPU, "
           "256 MiB); virtnbdbackup %s; virtsnap %s (git %s); load average %s" % (
    E["OS"], E["NPROC"], E["CPU"], E["KERNEL"], E["LIBVIRT_V"], E["QEMU_V"], E["VIRT_TYPE"],
    E["VNBD_V"], E["VS_V"], E["GIT_V"], E["LOADAVG"]))
disk = ("%s qcow2 data disk (ext4, vda), virtual %d bytes, %d bytes of allocated data (%.0f MiB: "
        "random + log-like text, written offline with mkfs.ext4 -d); the guest's writer appends "
        "~20 records/s to /data/records.log throughout. virtsnap read %s bytes. MB/s = 10^6 bytes/s." % (
    E["DISK_SIZE"], VSIZE, DATA, DATA / MiB, E["VS_READ"]))
sec = "\n".join([
    "## backup-bench", "",
    "`bench/backup-bench.sh [WORKDIR]` (root; %s runs per tool, interleaved; whole run %d s). "
    "Date: %s." % (E["RUNS"], int(E["T_TOTAL"]), E["DATE"]), "",
    "Machine: " + machine + ".", "",
    "Disk: " + disk + " Cache: " + E["CACHED_NOTE"] + ". qemu-img convert needed force-share: "
    + E["FORCESHARE"] + ".", "",
    table, "",
    "Own freeze ms: virtsnap `freeze_ms` from `--json` (group_freeze_ms is the same for one "
    "domain); qemu-img: the duration of `virsh snapshot-create-as --quiesce` (freeze, snapshot, "
    "thaw); virtnbdbackup reports none (its log has 1 s resolution). Guest-seen gap: longest "
    "interval between consecutive records of the guest's writer while the tool ran, the same "
    "measure for all. Stored: `du -sb` of the repository / output file / output directory. "
    "CPU: user+sys of the tool and the children it waited for (virtsnap's qemu-img map (and qemu-nbd, where used) "
    "included; the NBD server virtnbdbackup reads from runs inside QEMU and is not counted). "
    "The qemu-img cycle row times `virsh` snapshot, convert and blockcommit together; its RSS and "
    "CPU are the convert's.", "",
    gapnote, "",
    *(["Where virtsnap backup's time goes (one more cold run under perf record -F 499, the whole "
       "process tree; pool-* are the engine's threads, vs-* virtsnap's own; the guest's own QEMU, "
       "whose TCG vCPU shares the same cores, is not in it): " + E["PERF_NOTE"], ""]
      if E.get("PERF_NOTE") else []),
    "Ratios (medians):", *ratios, "",
    "Goals:", *goals, "",
    "Reproduce: `sudo bench/backup-bench.sh [WORKDIR]` from the source root after "
    "`meson setup build-bench && ninja -C build-bench` (env: VIRTSNAP, RUNS, RAND_MIB, TEXT_MIB, "
    "DISK_SIZE, BIG_DISK_SIZE, NO_PERF=1, BASELINE, BASELINE_GIT). Needs `apt-get install virtnbdbackup time jq` (perf "
    "optional) and the test guest (tests/guest).", ""])
print()
print(sec)
if E.get("NO_README") != "1":
    sys.path.insert(0, E["BENCH_DIR"])
    from readme_section import write_section
    write_section(E["README"], "backup-bench", sec)
PY
