#!/bin/bash
# restore-bench.sh [WORKDIR] -- virtsnap restore against its peers, in one run, on the same
# data as backup-bench: a 4 GiB qcow2 disk holding ~1.5 GiB (1 GiB random, 0.5 GiB log-like
# text, several files, written offline with mkfs.ext4 -d), attached to a defined, shut-off
# domain (no guest runs: a restore reads a backup, not a guest). Made once beforehand:
#   a virtsnap repository       `virtsnap backup --repo R --init DOM`
#   EXPORTED.qcow2              `virtsnap export --repo R ID DOM vda EXPORTED.qcow2`
#   a virtnbdbackup backup dir  `virtnbdbackup -d DOM -l full -o DIR` (offline domain:
#                               virtnbdbackup runs its own qemu-nbd and writes a "copy" set)
# Then, RUNS times each (default 3), interleaved, page cache dropped before every run:
#   virtsnap restore   `virtsnap restore --repo R DOM --as NEW --target-dir OUT` (a new disk
#                      file NEW-vda.qcow2 plus NEW.xml; nothing defined: what the peers do)
#   the same through qemu-nbd  VIRTSNAP_QCOW2_WRITER=qemu-nbd: the qcow2 written by qemu-nbd
#                      over a socket, as before virtsnap had its own qcow2 writer
#   qemu-img convert   `qemu-img convert -O qcow2 EXPORTED.qcow2 OUT.qcow2`
#   virtnbdrestore     `virtnbdrestore -i DIR -o OUTDIR` (qcow2, through its own qemu-nbd)
#   virtsnap export    `virtsnap export ... OUT.qcow2` (the step before qemu-img convert)
#   the same, hashed   `virtsnap restore ... --verify-hash` (SHA-256 of every chunk as well)
#   virtsnap verify    `virtsnap verify ID` (reading, inflating and SHA-256-hashing every
#                      chunk, alone: what restore --verify-hash does as it writes)
# Measured: wall time, then the time of an fsync of the output (so that every tool is
# compared with its data on disk), MB/s (data bytes and virtual size over wall + fsync),
# CPU s, peak RSS (/usr/bin/time -v, and the summed RSS/PSS of the tool's process tree
# sampled every 100 ms: the qemu-nbd helpers count), output bytes allocated (du -B1).
# Every restored image is compared with the original disk (qemu-img compare; not timed).
# One more virtsnap restore under `perf record` shows where its CPU time goes.
# Prints a table and writes the "## restore-bench" section of bench/README.md (other
# sections are kept).
#
# Needs root, libvirtd, the test guest files (tests/guest; only for the domain XML),
# virtnbdbackup (virtnbdrestore), /usr/bin/time, jq; perf optional.
# WORKDIR (default: the harness work dir under /tmp/virtsnap-tests); everything made there,
# the domain and any helper left running are removed on exit.
# Env: VIRTSNAP (binary; default build-rbench/, build-bench/, else build/), RUNS=3,
#      RAND_MIB=1024, TEXT_MIB=512, DISK_SIZE=4G, NO_PERF=1 (skip the profile),
#      NO_README=1 (print only).
set -euo pipefail
VS_TEST_NAME=restore-bench
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$BENCH_DIR/../tests/lib/harness.sh"
. "$BENCH_DIR/lib.sh"
export BENCH_DIR

RUNS=${RUNS:-3}
RAND_MIB=${RAND_MIB:-1024}
TEXT_MIB=${TEXT_MIB:-512}
DISK_SIZE=${DISK_SIZE:-4G}
README=$VS_SOURCE_ROOT/bench/README.md
T_START=$(date +%s)
LOAD_START=$(cut -d" " -f1-3 /proc/loadavg)

vs_require_root
bench_find_virtsnap build-rbench build-bench build
[ -x /usr/bin/time ] || vs_fail "/usr/bin/time missing: apt-get install time"
command -v jq >/dev/null || vs_fail "jq missing: apt-get install jq"
command -v virtnbdrestore >/dev/null || vs_fail "virtnbdrestore missing: apt-get install virtnbdbackup"
vs_libvirt_up

bench_workdir restore-bench "${1:-}"
RES=$W/results.tsv          # tool run wall_s rss_kb tree_rss_kb/tree_pss_kb/cpu_s bytes fsync_s
: > "$RES"
NBDDIR=$W/nbd; mkdir -p "$NBDDIR"; chmod 1777 "$NBDDIR"   # virtnbd*'s qemu-nbd sockets

# A tool or qemu-nbd helper left running by an interrupted run (only the script itself gets
# SIGTERM when it is stopped by hand): processes whose command line names a file in this
# run's work dir, other than the script's own shells, are ended by pid.
kill_helpers() {
  local p c pids=""
  for p in /proc/[0-9]*; do
    c=$(tr '\0' ' ' 2>/dev/null < "$p/cmdline") || continue
    case "$c" in bash\ *|/bin/bash\ *|/usr/bin/bash\ *) continue;; *"$1/"*) ;; *) continue;; esac
    kill "${p#/proc/}" 2>/dev/null && pids="$pids ${p#/proc/}"
  done
  for _ in $(seq 1 30); do      # let them go before their files are removed
    for p in $pids; do [ ! -d "/proc/$p" ] || { sleep 0.1; continue 2; }; done
    break
  done
}
vs_on_exit kill_helpers "$W"

# ---------------------------------------------------------------- helpers



record() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >> "$RES"; }

# same_content NAME RUN IMAGE: the image must hold the original disk's content
same_content() {
  local msg
  msg=$(qemu-img compare -f qcow2 -F qcow2 "$DISK" "$3" 2>&1) ||
    vs_fail "$1 #$2: $3 differs from the original disk: $msg"
  echo "$1 $2 identical" >> "$W/compared"
}

# ---------------------------------------------------------------- the data and the domain

SRC=$W/src
vs_log "data: ${RAND_MIB} MiB random + ${TEXT_MIB} MiB log-like text in $SRC"
bench_make_data "$SRC" "$RAND_MIB" "$TEXT_MIB"

DOM=vst-rbench-$$
NEW=vst-rbench-new-$$        # the --as name: only written into NEW.xml, never defined
DISK=$W/disk.qcow2
t0=$(ns)
"$VS_GUEST_SRC/mkdisk.sh" "$DISK" "$DISK_SIZE" "$SRC"
chmod 644 "$DISK"
vs_log "mkdisk $DISK_SIZE: $(secs "$t0" "$(ns)") s"
rm -rf "$SRC"

data_bytes() { qemu-img map -U --output=json "$1" | jq '[.[] | select(.data) | .length] | add'; }
virt_bytes() { qemu-img info -U --output=json "$1" | jq '.["virtual-size"]'; }
DATA=$(data_bytes "$DISK"); VSIZE=$(virt_bytes "$DISK")
vs_log "disk: virtual $VSIZE bytes, data $DATA bytes"

# Defined, never started: virtsnap and virtnbdbackup both back up a shut-off domain.
vs_domain_track "$DOM"
vs_guest_xml "$DOM" "$DISK" > "$W/$DOM.xml"
msg=$(virsh define "$W/$DOM.xml" 2>&1) || vs_fail "define $DOM: $msg"

# ---------------------------------------------------------------- the backups (not timed runs)

REPO=$W/repo STATE=$W/state
drop_caches
measure "$W/prep-backup" "$VIRTSNAP" backup --repo "$REPO" --init --state-dir "$STATE" --json "$DOM"
[ "$M_RC" = 0 ] || vs_fail "virtsnap backup failed (exit $M_RC): $(tail -n 20 "$W/prep-backup.err")"
ID=$(jq -r '.id' "$W/prep-backup.out")
jq -e '.domains[0].ok' "$W/prep-backup.out" >/dev/null || vs_fail "backup not ok: $(cat "$W/prep-backup.out")"
PREP_VS="virtsnap backup ${M_WALL} s, repository $(du -sB1 "$REPO" | cut -f1) bytes"
vs_log "$PREP_VS (backup $ID)"

VNBD=$W/vnbd
drop_caches
measure "$W/prep-vnbd" virtnbdbackup -d "$DOM" -l full -o "$VNBD" -n -S "$NBDDIR" -f "$NBDDIR/bsock"
[ "$M_RC" = 0 ] || vs_fail "virtnbdbackup failed (exit $M_RC): $(tail -n 20 "$W/prep-vnbd.err")"
VNBD_SET=$(cd "$VNBD" && ls vda.*.data | tr '\n' ' ')
[ -n "$VNBD_SET" ] || vs_fail "virtnbdbackup wrote no vda.*.data in $VNBD"
PREP_VNBD="virtnbdbackup ${M_WALL} s, ${VNBD_SET% } $(du -sB1 "$VNBD" | cut -f1) bytes"
vs_log "$PREP_VNBD"

EXPORTED=$W/exported.qcow2
measure "$W/prep-export" "$VIRTSNAP" export --repo "$REPO" "$ID" "$DOM" vda "$EXPORTED"
[ "$M_RC" = 0 ] || vs_fail "virtsnap export failed (exit $M_RC): $(tail -n 20 "$W/prep-export.err")"
same_content export-prep 0 "$EXPORTED"

# ---------------------------------------------------------------- the runs

run_restore() {    # RUN [KEY [ENV=VALUE [OPTION]]]: KEY virtsnap-restore unless given
  local run=$1 key=${2:-virtsnap-restore} p=$W/restore.${2:-}$1 out=$W/vsr.$1 img fs
  mkdir -p "$out"
  drop_caches
  measure "$p" env ${3:-VS_BENCH=1} "$VIRTSNAP" restore --repo "$REPO" --state-dir "$STATE" --json "$DOM" \
    --as "$NEW" --target-dir "$out" ${4:-}
  [ "$M_RC" = 0 ] || vs_fail "virtsnap restore failed (exit $M_RC): $(tail -n 20 "$p.err") $(cat "$p.out")"
  img=$(jq -r '.domains[0].disks[0].path' "$p.out")
  [ -f "$img" ] || vs_fail "virtsnap restore: no image at '$img': $(cat "$p.out")"
  fs=$(fsync_time "$img")
  record "$key" "$run" "$M_WALL" "$M_RSS" "$M_TREE" "$(du -B1 "$img" | cut -f1)" "$fs"
  vs_log "$key #$run: ${M_WALL}s (+fsync ${fs}s) rss ${M_RSS}K tree ${M_TREE} ($(cat "$p.tree.who"))"
  same_content "$key" "$run" "$img"
  [ "$key" != virtsnap-restore ] || qemu-img check -q "$img" || vs_fail "qemu-img check $img failed"
  rm -rf "$out"
}

run_convert() {    # RUN
  local run=$1 p=$W/convert.$1 out=$W/convert.$1.qcow2 fs
  drop_caches
  measure "$p" qemu-img convert -O qcow2 "$EXPORTED" "$out"
  [ "$M_RC" = 0 ] || vs_fail "qemu-img convert failed: $(cat "$p.err")"
  fs=$(fsync_time "$out")
  record qemu-img-convert "$run" "$M_WALL" "$M_RSS" "$M_TREE" "$(du -B1 "$out" | cut -f1)" "$fs"
  vs_log "qemu-img convert #$run: ${M_WALL}s (+fsync ${fs}s) rss ${M_RSS}K"
  same_content qemu-img-convert "$run" "$out"
  rm -f "$out"
}

run_vnbdrestore() {  # RUN
  local run=$1 p=$W/vnbdrestore.$1 out=$W/vnr.$1 img fs
  drop_caches
  measure "$p" virtnbdrestore -i "$VNBD" -o "$out" -n -L "$p.log" -f "$NBDDIR/rsock.$run"
  [ "$M_RC" = 0 ] || vs_fail "virtnbdrestore failed (exit $M_RC): $(tail -n 20 "$p.err")"
  img=$(find "$out" -maxdepth 1 -type f ! -name '*.xml' ! -name '*.log' | sed -n 1p)
  [ -n "$img" ] || vs_fail "virtnbdrestore wrote no image in $out"
  [ "$(qemu-img info --output=json "$img" | jq -r .format)" = qcow2 ] || vs_fail "virtnbdrestore: $img is not qcow2"
  fs=$(fsync_time "$img")
  record virtnbdrestore "$run" "$M_WALL" "$M_RSS" "$M_TREE" "$(du -B1 "$img" | cut -f1)" "$fs"
  vs_log "virtnbdrestore #$run: ${M_WALL}s (+fsync ${fs}s) rss ${M_RSS}K tree ${M_TREE} ($(cat "$p.tree.who"))"
  same_content virtnbdrestore "$run" "$img"
  rm -rf "$out"
}

run_export() {     # RUN
  local run=$1 p=$W/export.$1 out=$W/export.$1.qcow2 fs
  drop_caches
  measure "$p" "$VIRTSNAP" export --repo "$REPO" "$ID" "$DOM" vda "$out"
  [ "$M_RC" = 0 ] || vs_fail "virtsnap export failed (exit $M_RC): $(tail -n 20 "$p.err")"
  fs=$(fsync_time "$out")
  record virtsnap-export "$run" "$M_WALL" "$M_RSS" "$M_TREE" "$(du -B1 "$out" | cut -f1)" "$fs"
  vs_log "virtsnap export #$run: ${M_WALL}s (+fsync ${fs}s) rss ${M_RSS}K"
  same_content virtsnap-export "$run" "$out"
  rm -f "$out"
}

run_verify() {     # RUN
  local run=$1 p=$W/verify.$1
  drop_caches
  measure "$p" "$VIRTSNAP" verify --repo "$REPO" "$ID"
  [ "$M_RC" = 0 ] || vs_fail "virtsnap verify failed (exit $M_RC): $(tail -n 20 "$p.err")"
  record virtsnap-verify "$run" "$M_WALL" "$M_RSS" "$M_TREE" 0 0
  vs_log "virtsnap verify #$run: ${M_WALL}s rss ${M_RSS}K"
}

for r in $(seq 1 "$RUNS"); do
  run_restore "$r"
  run_restore "$r" restore-nbd VIRTSNAP_QCOW2_WRITER=qemu-nbd
  run_restore "$r" restore-hash VS_BENCH=1 --verify-hash
  run_convert "$r"
  run_vnbdrestore "$r"
  run_export "$r"
  run_verify "$r"
done

# Where virtsnap restore's CPU time goes: one more run under perf (cpu-clock samples of the
# whole process tree), by process and shared object, and its top symbols.
PERF_NOTE=""
if [ "${NO_PERF:-0}" != 1 ] && command -v perf >/dev/null; then
  mkdir -p "$W/vsr.perf"
  drop_caches
  if perf record -q -F 499 -o "$W/perf.data" -- "$VIRTSNAP" restore --repo "$REPO" \
       --state-dir "$STATE" "$DOM" --as "$NEW" --target-dir "$W/vsr.perf" >/dev/null 2>"$W/perf.err"; then
    # threads: vs-export = the chunk readers, pool-restore = the writer (with the qcow2 writer)
    perf report -i "$W/perf.data" --stdio --no-children --sort comm 2>/dev/null |
      awk '/^ *[0-9.]+%/ && n++ < 5 { printf "%s%s %s", (n > 1 ? ", " : ""), $1, $2 }' > "$W/perf.comm"
    perf report -i "$W/perf.data" --stdio --no-children --sort dso 2>/dev/null |
      awk '/^ *[0-9.]+%/ && n++ < 6 { printf "%s%s %s", (n > 1 ? ", " : ""), $1, $2 }' > "$W/perf.dso"
    perf report -i "$W/perf.data" --stdio --no-children --sort sym 2>/dev/null |
      awk '/^ *[0-9.]+%/ && n++ < 6 { p = $1; $1 = ""; $2 = ""; sub(/^ +/, ""); printf "%s%s %s", (n > 1 ? ", " : ""), p, $0 }' > "$W/perf.sym"
    PERF_NOTE="by thread: $(cat "$W/perf.comm"); by object: $(cat "$W/perf.dso"); top symbols: $(cat "$W/perf.sym")."
  else
    PERF_NOTE="perf record failed: $(tail -n 2 "$W/perf.err" | tr '\n' ' ')"
  fi
  rm -rf "$W/vsr.perf" "$W/perf.data"
  vs_log "perf: $PERF_NOTE"
fi

# ---------------------------------------------------------------- report

T_TOTAL=$(( $(date +%s) - T_START ))
LIBVIRT_V=$(libvirtd --version | awk '{ print $NF }')
QEMU_V=$(qemu-img --version | sed -n '1s/.*version \([^ ]*\).*/\1/p')
VNBD_V=$(virtnbdrestore -V 2>&1 | tail -n1)
CPU=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | sed -n 1p)
OS=$(. /etc/os-release && echo "$PRETTY_NAME")
VS_V=$("$VIRTSNAP" --version 2>/dev/null | head -n1 || echo "?")
GIT_V=$(git -C "$(dirname "$VIRTSNAP")" describe --always --dirty 2>/dev/null || echo "?")
COMPARED=$(wc -l < "$W/compared")
EXP_BYTES=$(du -B1 "$EXPORTED" | cut -f1)

export RES DATA VSIZE RUNS T_TOTAL LIBVIRT_V QEMU_V VNBD_V CPU OS VS_V GIT_V README DISK_SIZE \
  PREP_VS PREP_VNBD PERF_NOTE COMPARED EXP_BYTES VNBD_SET
export NPROC=$(nproc) KERNEL=$(uname -r) DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
export LOADAVG="$LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end"
/usr/bin/python3 - <<'PY'
import os, sys, statistics as st
E = os.environ
rows = {}
for line in open(E["RES"]):
    f = line.rstrip("\n").split("\t")
    t = (f[4].split("/") + ["0", "0", "0"])[:3]
    rows.setdefault(f[0], []).append(dict(run=int(f[1]), wall=float(f[2]), rss=int(f[3] or 0),
        tree=int(t[0] or 0), pss=int(t[1] or 0), cpu=float(t[2] or 0), bytes=int(f[5] or 0),
        fsync=float(f[6] or 0)))
for x in sum(rows.values(), []):
    x["total"] = x["wall"] + x["fsync"]
# export + convert, paired run by run: what a user without `restore` runs
if "virtsnap-export" in rows and "qemu-img-convert" in rows:
    conv = {x["run"]: x for x in rows["qemu-img-convert"]}
    rows["export+convert"] = [dict(run=e["run"], wall=e["wall"] + conv[e["run"]]["wall"],
        fsync=e["fsync"] + conv[e["run"]]["fsync"], total=e["total"] + conv[e["run"]]["total"],
        cpu=e["cpu"] + conv[e["run"]]["cpu"], rss=max(e["rss"], conv[e["run"]]["rss"]),
        tree=max(e["tree"], conv[e["run"]]["tree"]), pss=max(e["pss"], conv[e["run"]]["pss"]),
        bytes=conv[e["run"]]["bytes"]) for e in rows["virtsnap-export"] if e["run"] in conv]
DATA, VSIZE = int(E["DATA"]), int(E["VSIZE"])
MiB = 1048576

def med(xs): return st.median(xs)
def rng(xs, fmt):
    return (fmt % med(xs)) + ("" if len(xs) < 2 else " [" + (fmt % min(xs)) + "-" + (fmt % max(xs)) + "]")
def m(key, field): return med([x[field] for x in rows[key]]) if key in rows else float("nan")

labels = [
    ("virtsnap-restore", "virtsnap restore --as NEW --target-dir DIR (each chunk's zstd checksum and size checked as written)"),
    ("restore-hash", "the same with --verify-hash (each chunk also re-hashed with SHA-256)"),
    ("restore-nbd", "the same, VIRTSNAP_QCOW2_WRITER=qemu-nbd (the qcow2 written through qemu-nbd, as before)"),
    ("qemu-img-convert", "qemu-img convert -O qcow2 EXPORTED.qcow2 OUT.qcow2"),
    ("virtnbdrestore", "virtnbdrestore -i DIR -o OUTDIR"),
    ("virtsnap-export", "virtsnap export (the step before qemu-img convert)"),
    ("export+convert", "virtsnap export + qemu-img convert (sum, run by run)"),
    ("virtsnap-verify", "virtsnap verify (the reading and hashing alone; no output)"),
]
hdr = ("| tool | runs | wall s, median [range] | + fsync of the output s | data MB/s | virtual MB/s "
       "| CPU s (user+sys) | peak RSS MiB (time -v) | peak RSS MiB, process tree: sum RSS / sum PSS "
       "| output allocated MiB (du -B1) |")
out = [hdr, "|" + "---|" * 10]
for key, label in labels:
    r = rows.get(key)
    if not r: continue
    w = [x["total"] for x in r]
    out.append("| %s | %d | %s | %s | %s | %s | %s | %s | %s / %s | %s |" % (
        label, len(r), rng([x["wall"] for x in r], "%.1f"), rng([x["fsync"] for x in r], "%.2f"),
        rng([DATA / x / 1e6 for x in w], "%.0f"), rng([VSIZE / x / 1e6 for x in w], "%.0f"),
        rng([x["cpu"] for x in r], "%.1f"),
        rng([x["rss"] / 1024 for x in r], "%.1f"), rng([x["tree"] / 1024 for x in r], "%.1f"),
        rng([x["pss"] / 1024 for x in r], "%.1f"),
        rng([x["bytes"] / MiB for x in r], "%.0f") if key != "virtsnap-verify" else "-"))
table = "\n".join(out)

vs_t, vs_r = m("virtsnap-restore", "total"), m("virtsnap-restore", "rss")
ratios, goals = [], []
for key, label in (("qemu-img-convert", "qemu-img convert of the exported image"),
                   ("virtnbdrestore", "virtnbdrestore"),
                   ("restore-nbd", "virtsnap restore through qemu-nbd (before its own qcow2 writer)"),
                   ("export+convert", "virtsnap export + qemu-img convert")):
    if key not in rows: continue
    pt = m(key, "total")
    ratios.append("- vs %s: time %.2fx (virtsnap/peer, wall + fsync; <1 = virtsnap faster), MB/s "
                  "%.2fx, CPU %.1f vs %.1f s, peak RSS (time -v) %.1f vs %.1f MiB, process tree "
                  "%.1f vs %.1f MiB, output allocated %.2fx" % (
        label, vs_t / pt, pt / vs_t, m("virtsnap-restore", "cpu"), m(key, "cpu"), vs_r / 1024,
        m(key, "rss") / 1024, m("virtsnap-restore", "tree") / 1024, m(key, "tree") / 1024,
        m("virtsnap-restore", "bytes") / m(key, "bytes")))
    if key not in ("export+convert", "restore-nbd"):
        goals.append("- faster than %s: **%s** (%.1f s vs %.1f s median: virtsnap %s)" % (
            label, "met" if vs_t < pt else "NOT met", vs_t, pt,
            "%.2fx faster" % (pt / vs_t) if vs_t < pt else "%.2fx slower (%.1f s more)" % (vs_t / pt, vs_t - pt)))
peers = [m(k, "total") for k in ("qemu-img-convert", "virtnbdrestore") if k in rows]
goals.append("- faster than both (the issue's goal): **%s**" % ("met" if peers and all(vs_t < p for p in peers) else "NOT met"))
vt, et = m("virtsnap-verify", "total"), m("virtsnap-export", "total")
split = ("virtsnap restore %.1f s median, %.1f s CPU against %.1f s for qemu-img convert. There is "
         "one pass: reader threads (one per core) read and decompress each chunk, zstd checking "
         "its XXH64 content checksum (SHA-256 too with --verify-hash), "
         "a prefetch thread asking the kernel for the chunk files ahead of them "
         "(`virtsnap verify` does that reading and hashing alone, without the prefetch: cold cache "
         "%.1f s, %.1f s CPU) while the writer "
         "writes them in order with pwrite into the qcow2 image virtsnap's own writer builds "
         "(before: to qemu-nbd over a socket, %.1f s, %.1f s CPU in this run) and "
         "starts the kernel's writeback every 64 MiB, so that the closing fsync is short; "
         "`virtsnap export` is the same code (%.1f s, %.1f s CPU). qemu-img convert copies a "
         "local qcow2: no decompression, no hashing; on 2 shared cores wall time "
         "follows CPU time, and restore needs %.1fx the CPU of qemu-img convert" % (
    vs_t, m("virtsnap-restore", "cpu"), m("qemu-img-convert", "cpu"), vt, m("virtsnap-verify", "cpu"),
    m("restore-nbd", "total"), m("restore-nbd", "cpu"), et, m("virtsnap-export", "cpu"), m("virtsnap-restore", "cpu") / max(m("qemu-img-convert", "cpu"), 0.01)))
machine = ("%s; nproc %s; CPU %s; kernel %s; libvirt %s; QEMU %s; virtnbdbackup %s; %s "
           "(git %s); load average %s. The machine has 2 cores and is shared with other jobs "
           "(load average typically 5-9): absolute figures move from run to run; the ratios "
           "between tools measured in the same run are what counts" % (
    E["OS"], E["NPROC"], E["CPU"], E["KERNEL"], E["LIBVIRT_V"], E["QEMU_V"], E["VNBD_V"],
    E["VS_V"], E["GIT_V"], E["LOADAVG"]))
disk = ("%s qcow2 disk (ext4), virtual %d bytes, %d bytes of allocated data (%.0f MiB: random + "
        "log-like text, written offline with mkfs.ext4 -d, as for backup-bench), attached as vda to "
        "a defined domain that is never started. Made beforehand, not in the table: %s; %s (%s; "
        "the domain is shut off, so virtnbdbackup starts its own qemu-nbd and writes a 'copy' "
        "set, the same stream format as -l full); the exported image (%d bytes allocated). "
        "MB/s = 10^6 bytes/s over wall + fsync." % (
    E["DISK_SIZE"], VSIZE, DATA, DATA / MiB, E["PREP_VS"], E["PREP_VNBD"], E["VNBD_SET"].strip(),
    int(E["EXP_BYTES"])))
sec = "\n".join([
    "## restore-bench", "",
    "`bench/restore-bench.sh [WORKDIR]` (root; %s runs per tool, interleaved; whole run %d s). "
    "Date: %s." % (E["RUNS"], int(E["T_TOTAL"]), E["DATE"]), "",
    "Machine: " + machine + ".", "",
    "Disk: " + disk + " Cache: page cache dropped before every run (sync; echo 3 > "
    "/proc/sys/vm/drop_caches). Every output (%s images) compared identical to the original "
    "disk with `qemu-img compare` (not timed). All outputs are qcow2." % E["COMPARED"], "",
    table, "",
    "Wall: the tool alone; then `sync FILE` (fsync) of its output is timed, so each tool is "
    "compared with its data on disk (MB/s and ratios use wall + fsync). CPU: user+sys of the tool "
    "and the children it waited for (the qemu-nbd writers of virtnbdrestore and of virtsnap "
    "with VIRTSNAP_QCOW2_WRITER=qemu-nbd included). "
    "Process tree: the tool and its helpers sampled together every 100 ms. virtsnap restore "
    "writes NEW-vda.qcow2 and NEW.xml (no --define/--start): the same work as virtnbdrestore "
    "without -D and as qemu-img convert.", "",
    "Ratios (medians):", *ratios, "",
    "Goals:", *goals, "",
    "Where virtsnap restore's time goes: " + split + ". perf (cpu-clock samples of the whole "
    "process tree, one extra cold run; pool-restore = the writer thread, vs-export = the reader "
    "threads, vs-prefetch = the chunk file prefetch) " + (E["PERF_NOTE"] or "not run"), "",
    "Reproduce: `sudo bench/restore-bench.sh [WORKDIR]` from the source root after "
    "`meson setup build-rbench && ninja -C build-rbench` (env: VIRTSNAP, RUNS, RAND_MIB, TEXT_MIB, "
    "DISK_SIZE, NO_PERF). Needs `apt-get install virtnbdbackup time jq` (perf optional) and "
    "the test guest files (tests/guest).", ""])
print()
print(sec)
if E.get("NO_README") != "1":
    sys.path.insert(0, E["BENCH_DIR"])
    from readme_section import write_section
    write_section(E["README"], "restore-bench", sec)
PY
