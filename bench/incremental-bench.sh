#!/bin/bash
# incremental-bench.sh [WORKDIR] -- the second backup, which is what users measure: two running
# guests with identical copies of one 4 GiB qcow2 data disk holding ~1.5 GiB (the data of
# backup-bench.sh), one per tool (virtnbdbackup refuses to work on a domain that has another
# tool's checkpoints: "Foreign checkpoint found"), each backed up full once, then RUNS times
# (default 3; virtsnap's full RUNS times too, the median being the goal's yardstick): each
# guest writes ~5% of its disk (205 MiB of new random data, fsynced), and
# each tool takes an incremental of that change, in alternating order, page cache dropped
# before each, the other tool's guest paused meanwhile (under TCG a guest's writer keeps a
# core busy: each tool runs beside its own guest only):
#   virtsnap       `virtsnap backup --mode=begin` (checkpoint + dirty bitmap, pull mode)
#   virtsnap push  `virtsnap backup --push` (the same, push mode: QEMU writes the changed
#                  clusters into a local qcow2 that virtsnap reads; a second repository,
#                  so a chain of its own on the same guest, full once, then each change)
#   virtnbdbackup  `virtnbdbackup -l inc` (the same libvirt mechanism, Debian package)
# and last one `virtsnap backup --mode=begin --level=diff` (every change since the full
# backup: RUNS x 205 MiB), for what a differential costs (no goal; virtnbdbackup has no
# such level).
# Measured: wall time, bytes read / stored (virtsnap's JSON; du -sb of virtnbdbackup's new
# files), peak RSS (/usr/bin/time -v). Goals (issue 6): virtsnap's incremental below 10% of
# its own full backup's time, and faster than virtnbdbackup's incremental of the same change;
# both judged for each mode, against the pull-mode full (the median of RUNS).
# Prints a table and writes the "## incremental-bench" section of bench/README.md.
# Needs root, libvirtd, the test guest (tests/guest), virtnbdbackup, /usr/bin/time, jq.
# Env: VIRTSNAP (binary; default build-bench/, else build/), RUNS=3, RAND_MIB=1024,
#      TEXT_MIB=512, DISK_SIZE=4G, CHANGE_MIB=205, NO_README=1 (print only).
set -euo pipefail
VS_TEST_NAME=incremental-bench
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export BENCH_DIR
. "$BENCH_DIR/../tests/lib/harness.sh"
. "$BENCH_DIR/lib.sh"

RUNS=${RUNS:-3}
RAND_MIB=${RAND_MIB:-1024}
TEXT_MIB=${TEXT_MIB:-512}
DISK_SIZE=${DISK_SIZE:-4G}
CHANGE_MIB=${CHANGE_MIB:-205}
README=$VS_SOURCE_ROOT/bench/README.md
T_START=$(date +%s)
LOAD_START=$(cut -d" " -f1-3 /proc/loadavg)

vs_require_root
bench_find_virtsnap build-bench build
[ -x /usr/bin/time ] || vs_fail "/usr/bin/time missing: apt-get install time"
command -v virtnbdbackup >/dev/null || vs_fail "virtnbdbackup missing: apt-get install virtnbdbackup"
vs_libvirt_up
bench_workdir incremental-bench "${1:-}"
RES=$W/results.tsv     # tool run wall_s rss_kb read_bytes stored_bytes [phases_ms, virtsnap]
: > "$RES"
record() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" "$6" "${7:-}" >> "$RES"; }

SRC=$W/src
vs_log "data: ${RAND_MIB} MiB random + ${TEXT_MIB} MiB log-like text"
bench_make_data "$SRC" "$RAND_MIB" "$TEXT_MIB"
DOM=vst-ibench-$$ DOMN=vst-ibenchn-$$
DISK=$W/disk.qcow2 DISKN=$W/diskn.qcow2
"$VS_GUEST_SRC/mkdisk.sh" "$DISK" "$DISK_SIZE" "$SRC"
cp --sparse=always "$DISK" "$DISKN"
chmod 644 "$DISK" "$DISKN"
rm -rf "$SRC"
MEM_MIB=${MEM_MIB:-256} vs_guest_start "$DOM" "$DISK"
MEM_MIB=${MEM_MIB:-256} vs_guest_start "$DOMN" "$DISKN"
vs_on_exit virsh -c "$VS_URI" domjobabort "$DOM"
vs_on_exit virsh -c "$VS_URI" domjobabort "$DOMN"
REPO=$W/repo STATE=$W/state VNBD=$W/vnbd NBDDIR=$W/nbd PUSHREPO=$W/repo-push PUSHDIR=$W/push
mkdir -p "$NBDDIR" "$PUSHDIR"; chmod 1777 "$NBDDIR"

# The other tool's guest is paused while a tool runs: under TCG each guest's writer keeps a
# core busy, and a second busy guest on this 2-core machine would measure its load, not the
# tool. Each tool runs beside exactly one running guest: its own.
quiet_other() { virsh -c "$VS_URI" suspend "$1" >/dev/null || vs_fail "cannot pause $1"; }
wake_other() { virsh -c "$VS_URI" resume "$1" >/dev/null || vs_fail "cannot resume $1"; }

run_vs() {    # NAME RUN [backup args]
  local name=$1 run=$2 p=$W/$1.$2; shift 2
  drop_caches
  quiet_other "$DOMN"
  measure "$p" "$VIRTSNAP" backup --repo "${VS_REPO_OVERRIDE:-$REPO}" --init --state-dir "$STATE" \
    --mode=begin --json "$@" "$DOM"
  wake_other "$DOMN"
  [ "$M_RC" = 0 ] && jq -e '.domains[0].ok' "$p.out" >/dev/null ||
    vs_fail "virtsnap backup failed (exit $M_RC): $(cat "$p.out") $(tail -n 5 "$p.err")"
  record "$name" "$run" "$M_WALL" "$M_RSS" "$(jq '.domains[0].disks[0].bytes_read' "$p.out")" \
    "$(jq '.domains[0].disks[0].bytes_stored' "$p.out")" \
    "$(jq -r '.phases_ms | [.prepare, .freeze, .copy, .end, .manifest] | map(tostring) | join(",")' "$p.out")"
  vs_log "$name #$run: ${M_WALL}s, read $(jq '.domains[0].disks[0].bytes_read' "$p.out"), $(jq -r '.domains[0].disks[0].read' "$p.out")"
}
run_vnbd() {  # NAME RUN LEVEL
  local name=$1 run=$2 level=$3 p=$W/$1.$2 before after
  before=$(du -sb "$VNBD" 2>/dev/null | cut -f1 || echo 0)
  drop_caches
  quiet_other "$DOM"
  measure "$p" virtnbdbackup -d "$DOMN" -l "$level" -o "$VNBD" -n -S "$NBDDIR" -f "$NBDDIR/sock.$run"
  wake_other "$DOM"
  [ "$M_RC" = 0 ] || vs_fail "virtnbdbackup -l $level failed (exit $M_RC): $(tail -n 20 "$p.err")"
  after=$(du -sb "$VNBD" | cut -f1)
  record "$name" "$run" "$M_WALL" "$M_RSS" "" "$((after - ${before:-0}))"
  vs_log "$name #$run: ${M_WALL}s, wrote $((after - ${before:-0})) bytes"
}

# virtsnap's full, the goal's yardstick, RUNS times (one run of it ranged 5.4-8.9 s on
# this machine), each into a repository of its own (a second full into the same one finds
# its chunks there and stores nothing): the incrementals follow the last one, in $REPO.
for r in $(seq 1 "$RUNS"); do
  if [ "$r" -lt "$RUNS" ]; then
    VS_REPO_OVERRIDE=$W/repo-full$r run_vs virtsnap-full "$r" --level=full
  else
    run_vs virtsnap-full "$r" --level=full
  fi
done
VS_REPO_OVERRIDE=$PUSHREPO run_vs virtsnap-push-full 1 --level=full --push-dir "$PUSHDIR"
run_vnbd virtnbdbackup-full 1 full
run_push() { VS_REPO_OVERRIDE=$PUSHREPO run_vs virtsnap-push-inc "$1" --push-dir "$PUSHDIR"; }
for r in $(seq 1 "$RUNS"); do
  vs_log "--- run $r: the guest writes ${CHANGE_MIB} MiB"
  for d in "$DOM" "$DOMN"; do
    vs_gexec "$d" "dd if=/dev/urandom of=/data/change-$r bs=1M count=$CHANGE_MIB conv=fsync 2>/dev/null" >/dev/null
  done
  if [ $((r % 2)) = 1 ]; then
    run_vs virtsnap-inc "$r"; run_push "$r"; run_vnbd virtnbdbackup-inc "$r" inc
  else
    run_vnbd virtnbdbackup-inc "$r" inc; run_push "$r"; run_vs virtsnap-inc "$r"
  fi
done
run_vs virtsnap-diff 1 --level=diff
[ "$(jq -r '.domains[0].level' "$W/virtsnap-diff.1.out")" = diff ] ||
  vs_fail "the differential was not one: $(jq -c '.domains[0] | {level, note}' "$W/virtsnap-diff.1.out")"
# every backup verifies, and the last incremental is a whole disk that verifies as such
"$VIRTSNAP" verify --repo "$REPO" >/dev/null || vs_fail "the repository does not verify"
"$VIRTSNAP" verify --repo "$PUSHREPO" >/dev/null || vs_fail "the push repository does not verify"
[ "$(jq -r '.domains[0].level' "$W/virtsnap-push-inc.$RUNS.out")" = inc ] ||
  vs_fail "the last push backup was not an incremental: $(jq -c '.domains[0] | {level, note}' "$W/virtsnap-push-inc.$RUNS.out")"

export RES README RUNS CHANGE_MIB DISK_SIZE RAND_MIB TEXT_MIB
export LOADAVG="$LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end"
export DATE=$(date -u '+%Y-%m-%d %H:%M UTC') T_TOTAL=$(( $(date +%s) - T_START ))
export MACHINE="$(. /etc/os-release; echo "$PRETTY_NAME"); nproc $(nproc); kernel $(uname -r); QEMU $(qemu-img --version | head -1 | awk '{print $3}'); $(virtnbdbackup -V 2>&1 | tail -n1 | sed 's/^/virtnbdbackup /'); virtsnap git $(git -C "$VS_SOURCE_ROOT" describe --always --dirty 2>/dev/null)"
/usr/bin/python3 - <<'PY'
import os, sys, statistics as st
E = os.environ
rows = {}
for line in open(E["RES"]):
    name, run, wall, rss, rd, stored, ph = line.rstrip("\n").split("\t")
    rows.setdefault(name, []).append((float(wall), int(rss) / 1024, int(rd) if rd else None, int(stored),
                                      [int(x) for x in ph.split(",")] if ph else None))
def med(name, i):
    v = [r[i] for r in rows[name] if r[i] is not None]
    return st.median(v) if v else None
def rng(name, i):
    v = [r[i] for r in rows[name]]
    return "%.1f [%.1f-%.1f]" % (st.median(v), min(v), max(v)) if len(v) > 1 else "%.1f" % v[0]
MB = 1e6
lines = ["## incremental-bench", "",
         "`bench/incremental-bench.sh [WORKDIR]` (root; whole run %s s). Date: %s." % (E["T_TOTAL"], E["DATE"]), "",
         "Machine: %s; load average %s." % (E["MACHINE"], E["LOADAVG"]), "",
         "Two TCG guests (one per tool: virtnbdbackup refuses a domain with another tool's checkpoints; while one tool runs, the other tool's guest is paused, so that each tool runs beside one busy guest, its own, as on a host where only the guest being backed up is busy) on identical copies of a 4 GiB qcow2 data disk with %s MiB random + %s MiB log-like text (as backup-bench). "
         "virtsnap takes %s full backups, each into a fresh repository (the goal's yardstick, a median), and one push-mode full into a second repository (a chain of its own on the same guest); virtnbdbackup one; then %s times the guest writes %s MiB of new random data (~5%% of the "
         "disk, fsynced) in each guest and each tool takes an incremental of it (virtsnap twice: pull mode, and push mode into the second repository), in alternating order; last, virtsnap takes one differential (every change since its full backup). Page cache dropped before each." %
         (E["RAND_MIB"], E["TEXT_MIB"], E["RUNS"], E["RUNS"], E["CHANGE_MIB"]), "",
         "| tool | runs | wall s, median [range] | read MB (virtsnap JSON) | stored / written MB | peak RSS MiB |",
         "|---|---|---|---|---|---|"]
for name, label in (("virtsnap-full", "virtsnap backup --mode=begin --level=full"),
                    ("virtsnap-push-full", "virtsnap backup --push --level=full"),
                    ("virtnbdbackup-full", "virtnbdbackup -l full"),
                    ("virtsnap-inc", "virtsnap backup --mode=begin (incremental)"),
                    ("virtsnap-push-inc", "virtsnap backup --push (incremental)"),
                    ("virtnbdbackup-inc", "virtnbdbackup -l inc"),
                    ("virtsnap-diff", "virtsnap backup --mode=begin --level=diff (all %s runs' changes)" % E["RUNS"])):
    rd = med(name, 2)
    lines.append("| %s | %d | %s | %s | %.0f | %.1f |" % (label, len(rows[name]), rng(name, 0),
                 "%.0f" % (rd / MB) if rd is not None else "-", med(name, 3) / MB, med(name, 1)))
full, inc, vinc = med("virtsnap-full", 0), med("virtsnap-inc", 0), med("virtnbdbackup-inc", 0)
pinc = med("virtsnap-push-inc", 0)
PH = ("prepare (repository, discovery, base)", "freeze (guardian, freeze, backup job begin, thaw)",
      "copy (NBD reads or, push, the wait for the job and the file's reads; hash, compress, store)", "end (job abort)",
      "manifest (commit while the job is torn down, checkpoint upkeep)")
phase_meds = {}
for name, label in (("virtsnap-inc", "incremental"), ("virtsnap-push-inc", "push incremental"),
                    ("virtsnap-full", "full")):
    ph = [r[4] for r in rows[name] if r[4]]
    if not ph:
        continue
    meds = phase_meds[name] = [st.median(p[i] for p in ph) for i in range(len(PH))]
    outside = st.median(r[0] * 1000 - sum(r[4]) for r in rows[name] if r[4])
    lines += ["", "Where virtsnap's %s time goes (median ms of `phases_ms` in its JSON; the rest is the "
              "process: start, libvirt connection, exit): %s; outside them %.0f." %
              (label, "; ".join("%s %.0f" % (PH[i], meds[i]) for i in range(len(PH))), outside)]
frac = med("virtsnap-inc", 2) / med("virtsnap-full", 2)
inc_copy = phase_meds["virtsnap-inc"][2] / 1000 if "virtsnap-inc" in phase_meds else None
lines += ["", "The change is %.1f%% of the data the full backup reads (its read MB; the disk is %s, sparse)." %
          (100 * frac, E["DISK_SIZE"])]
if inc_copy is not None:
    lines[-1] += (" The incremental's copy alone took %.0f%% of the full's time (%.2f s); 10%% leaves "
                  "%.0f ms for everything else: process, discovery, freeze, backup job begin, thaw, manifest." %
                  (100 * inc_copy / full, inc_copy, max(0, 100 * full - 1000 * inc_copy)))
lines += ["", "Goals (each incremental against the pull-mode full's median):"]
for label, t in (("pull-mode incremental", inc), ("push-mode incremental", pinc)):
    lines += ["- %s below 10%% of virtsnap's own full backup: **%s** (%.2f s vs %.2f s: %.0f%%)" %
              (label, "met" if t < 0.1 * full else "NOT met", t, full, 100 * t / full),
              "- %s faster than virtnbdbackup -l inc on the same change: **%s** (%.2f s vs %.2f s median: %.2fx)" %
              (label, "met" if t < vinc else "NOT met", t, vinc, t / vinc)]
lines += ["",
          "Reproduce: `sudo bench/incremental-bench.sh [WORKDIR]` after `meson setup build-bench && "
          "ninja -C build-bench` (env: VIRTSNAP, RUNS, RAND_MIB, TEXT_MIB, DISK_SIZE, CHANGE_MIB). Needs "
          "`apt-get install virtnbdbackup time jq` and the test guest (tests/guest).", ""]
sec = "\n".join(lines)
print(); print(sec)
if E.get("NO_README") != "1":
    sys.path.insert(0, E["BENCH_DIR"])
    from readme_section import write_section
    write_section(E["README"], "incremental-bench", sec)
PY
