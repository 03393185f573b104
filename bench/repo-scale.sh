#!/bin/bash
# repo-scale.sh [WORKDIR] -- how the repository commands grow with the number of backups:
# `list`, `verify`, `prune` and `gc` on repositories of 100, 1,000 and 10,000 backups of one
# small domain (synthetic manifests over real chunks, made by bench/repo-gen: REFS chunk
# references per backup, each backup's window over DISTINCT real 4 KiB chunks shifted by one,
# backups an hour apart), `list` once more on repositories whose backups share their second
# of id TIES at a time, and `gc`'s peak memory on a repository of GC_BACKUPS x GC_REFS = 10
# million chunk references. No guest, no libvirt: the commands read the repository alone,
# page cache warm (a first run of each is dropped), the fastest of RUNS (default 3) reported.
# Goals (issue 13): 10x the backups costs at most 12x the time; `list` of 10,000 backups
# under 2 s; `gc` peak RSS under 256 MiB for 10 million references. The script reports
# which goals are met; it does not fail when one is not (a benchmark, not a test).
# Prints a table and writes the "## repo-scale" section of bench/README.md.
# Needs /usr/bin/time (apt-get install time). No root for the idle pass; as root with libvirt
# (GUEST=1, the default as root) everything is measured a second time while a test guest
# (tests/guest) runs and writes, which keeps one of the two cores busy under TCG.
# Env: VIRTSNAP, REPOGEN (binaries; default build-bench/, else build/), SIZES="100 1000 10000",
#      REFS=100, DISTINCT=1024, TIES=10, GC_BACKUPS=1000, GC_REFS=10000, GC_DISTINCT=20000,
#      RUNS=3, TIMEOUT=120 (s per command; a command that takes longer is reported as such),
#      NO_README=1 (print only), RESULTS=FILE (keep the raw results, tab-separated),
#      BASELINE=FILE (RESULTS of a run of an older build: its table is added, as "before"),
#      BASELINE_LABEL (what that build was), GUEST=0 (no pass with a running guest).
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC_ROOT=$(cd "$BENCH_DIR/.." && pwd)
export BENCH_DIR

SIZES=${SIZES:-"100 1000 10000"}
REFS=${REFS:-100}
DISTINCT=${DISTINCT:-1024}
TIES=${TIES:-10}
GC_BACKUPS=${GC_BACKUPS:-1000}
GC_REFS=${GC_REFS:-10000}
GC_DISTINCT=${GC_DISTINCT:-20000}
TIMEOUT=${TIMEOUT:-120}
RUNS=${RUNS:-3}
README=$SRC_ROOT/bench/README.md
T_START=$(date +%s)
LOAD_START=$(cut -d" " -f1-3 /proc/loadavg)

for b in build-bench build; do
  [ -n "${VIRTSNAP:-}" ] || [ ! -x "$SRC_ROOT/$b/tools/virtsnap" ] || VIRTSNAP=$SRC_ROOT/$b/tools/virtsnap
  [ -n "${REPOGEN:-}" ] || [ ! -x "$SRC_ROOT/$b/bench/repo-gen" ] || REPOGEN=$SRC_ROOT/$b/bench/repo-gen
done
[ -x "${VIRTSNAP:-}" ] && [ -x "${REPOGEN:-}" ] || { echo "repo-scale: build first (ninja -C build)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "repo-scale: /usr/bin/time missing: apt-get install time" >&2; exit 1; }

if [ -n "${1:-}" ]; then mkdir -p "$1"; W=$(cd "$1" && pwd)/repo-scale.$$; else W=$(mktemp -d /tmp/repo-scale.XXXXXX); fi
mkdir -p "$W"
trap 'rm -rf --one-file-system "$W"' EXIT
RES=$W/results.tsv     # what n wall_s rss_kib rc
: > "$RES"

# run WHAT N CMD...: once to warm the cache, then RUNS times measured under TIMEOUT: the
# fastest wall time (the run least disturbed by the machine's other jobs), the least CPU
# time (user+sys) and the highest peak RSS are recorded. A run that times out ends the
# measuring.
run() {
  local what=$1 n=$2 t0 t1 rc=0 rss wall best="" cpu bcpu="" peak=0 i
  shift 2
  timeout "$TIMEOUT" "$@" > /dev/null 2>&1 || true
  for i in $(seq 1 "$RUNS"); do
    t0=$(date +%s%N)
    /usr/bin/time -v -o "$W/time" timeout "$TIMEOUT" "$@" > "$W/out" 2> "$W/err" || rc=$?
    t1=$(date +%s%N)
    rss=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$W/time")
    wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
    [ "${rss:-0}" -le "$peak" ] || peak=$rss
    [ -n "$best" ] && awk -v a="$wall" -v b="$best" 'BEGIN { exit !(a >= b) }' || best=$wall
    cpu=$(awk -F': ' '/User time|System time/ { s += $2 } END { printf "%.3f", s }' "$W/time")
    [ -n "$bcpu" ] && awk -v a="$cpu" -v b="$bcpu" 'BEGIN { exit !(a >= b) }' || bcpu=$cpu
    [ "$rc" = 0 ] || break
  done
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "${TAG:-}$what" "$n" "$best" "$peak" "$rc" "$bcpu" >> "$RES"
  printf '%-20s %6s backups: %s s (CPU %s s), %s KiB%s\n' "${TAG:-}$what" "$n" "$best" "$bcpu" "$peak" \
    "$([ "$rc" = 0 ] || echo ", exit $rc$([ "$rc" != 124 ] || echo ": timed out after $TIMEOUT s")")"
  [ "$rc" = 0 ] || [ "$rc" = 124 ] || { echo "repo-scale: $what failed:" >&2; cat "$W/err" >&2; exit 1; }
}

# measure: every command at every size, then gc of 10 million references (TAG prefixes
# the results: "" idle, "guest:" with the guest running).
measure() {
  for n in $SIZES; do
    R=$W/r$n
    "$REPOGEN" --backups "$n" --refs "$REFS" --distinct "$DISTINCT" "$R"
    run list "$n" "$VIRTSNAP" list --repo "$R"
    run verify "$n" "$VIRTSNAP" verify --repo "$R"
    run prune-dry-run "$n" "$VIRTSNAP" prune --repo "$R" --dry-run --keep-daily 7 --keep-weekly 4 --keep-monthly 12
    run gc "$n" "$VIRTSNAP" gc --repo "$R"
    # a real prune removes backups: on a copy, fresh for each run
    for i in $(seq 1 $((RUNS + 1))); do cp -a "$R" "$R.p$i"; done
    printf '#!/bin/sh\nn=$(cat "%s/next"); echo $((n + 1)) > "%s/next"\nexec "%s" prune --repo "%s.p$n" --keep-daily 7 --keep-weekly 4 --keep-monthly 12\n' \
      "$W" "$W" "$VIRTSNAP" "$R" > "$W/prune-copy"
    chmod +x "$W/prune-copy"; echo 1 > "$W/next"
    run prune "$n" "$W/prune-copy"
    rm -rf "$R".p*
    # a repository written before summaries: list reads every manifest (once)
    if "$REPOGEN" --help | grep -q -- --no-summary; then
      RO=$W/o$n
      "$REPOGEN" --backups "$n" --refs "$REFS" --distinct "$DISTINCT" --no-summary "$RO"
      [ -n "${MANIFEST_BYTES:-}" ] || MANIFEST_BYTES=$(( $(du -sb "$RO/backups" | cut -f1) / n ))
      run list-old "$n" "$VIRTSNAP" list --repo "$RO"
      rm -rf "$RO"
    fi
    RT=$W/t$n
    "$REPOGEN" --backups "$n" --refs "$REFS" --distinct "$DISTINCT" --ties "$TIES" "$RT"
    run list-ties "$n" "$VIRTSNAP" list --repo "$RT"
    rm -rf "$R" "$RT"
  done

  G=$W/gc
  "$REPOGEN" --backups "$GC_BACKUPS" --refs "$GC_REFS" --distinct "$GC_DISTINCT" "$G"
  # once measured (after the warm-up run): its memory is the point, and each run parses ~1 GB
  RUNS=1 run gc-10M "$GC_BACKUPS" "$VIRTSNAP" gc --repo "$G"
  rm -rf "$G"
}

TAG= measure
GUEST_NOTE="not measured (GUEST=0, or not root)"
if [ "${GUEST:-$([ "$(id -u)" = 0 ] && echo 1 || echo 0)}" = 1 ]; then
  # The harness owns the EXIT trap from here on: it stops the guest and libvirtd, and
  # removes our work directory through vs_on_exit.
  trap - EXIT
  . "$SRC_ROOT/tests/lib/harness.sh"
  vs_on_exit rm -rf --one-file-system "$W"
  vs_require_root
  vs_libvirt_up
  GDISK=$(vs_guest_disk "$W/guest.qcow2")
  MEM_MIB=${MEM_MIB:-256} vs_guest_start "vst-repo-scale-$$" "$GDISK"
  GUEST_NOTE="a test guest (TCG, its record writer running) up during the whole pass; load average $(cut -d' ' -f1-3 /proc/loadavg) at its start"
  TAG=guest: measure
fi
export GUEST_NOTE
[ -z "${RESULTS:-}" ] || cp "$RES" "$RESULTS"

export MANIFEST_BYTES=${MANIFEST_BYTES:-0} BASELINE=${BASELINE:-} BASELINE_LABEL=${BASELINE_LABEL:-an older build}
export RUNS RES README SIZES REFS DISTINCT TIES GC_BACKUPS GC_REFS GC_DISTINCT TIMEOUT
export LOADAVG="$LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end"
export DATE=$(date -u '+%Y-%m-%d %H:%M UTC') T_TOTAL=$(( $(date +%s) - T_START ))
export MACHINE="$(. /etc/os-release; echo "$PRETTY_NAME"); nproc $(nproc); CPU $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo); kernel $(uname -r); virtsnap git $(git -C "$SRC_ROOT" describe --always --dirty 2>/dev/null)"
/usr/bin/python3 - <<'PY'
import os, sys
E = os.environ
def load(path):
    res = {}
    for line in open(path):
        f = line.rstrip("\n").split("\t")
        # what n wall rss rc [cpu]: an older run's file may lack the CPU time
        res[(f[0], int(f[1]))] = (float(f[2]), int(f[3]) / 1024, int(f[4]), float(f[5]) if len(f) > 5 and f[5] else None)
    return res
allres = load(E["RES"])
# idle pass and the pass with a running guest ("guest:" results), side by side
res = {k: v for k, v in allres.items() if not k[0].startswith("guest:")}
gres = {(k[0][6:], k[1]): v for k, v in allres.items() if k[0].startswith("guest:")}
sizes = [int(x) for x in E["SIZES"].split()]
T = int(E["TIMEOUT"])
OPS = (("list", "`list`"),
       ("list-ties", "`list`, %s backups per second of id" % E["TIES"]),
       ("list-old", "`list`, repository from before summaries"),
       ("verify", "`verify` (all backups)"),
       ("prune-dry-run", "`prune --dry-run --keep-daily 7 --keep-weekly 4 --keep-monthly 12`"),
       ("prune", "`prune` (the same policy, removing; with its gc)"),
       ("gc", "`gc` (nothing to remove)"))
def cell(res, what, n):
    if (what, n) not in res:
        return "-"
    wall, rss, rc, cpu = res[(what, n)]
    if rc == 124:
        return "> %d (timed out)" % T
    return "%.3f" % wall + (" (%.2f)" % cpu if cpu is not None else "")
def growth(res, what, i):
    """Ratios of each step of 10x by wall time (I=0) or CPU time (I=3), and whether each is at most 12x."""
    g, ok = [], True
    for a, b in zip(sizes, sizes[1:]):
        if (what, a) not in res or (what, b) not in res or res[(what, a)][2] != 0 or res[(what, a)][i] is None:
            g.append("-"); continue
        if res[(what, b)][2] == 124:
            g.append("> %.0fx" % (T / max(res[(what, a)][i], 1e-3))); ok = False; continue
        r = res[(what, b)][i] / max(res[(what, a)][i], 1e-3)
        # below 50 ms the process start dominates: growth there is not measurable
        if res[(what, a)][i] >= 0.05 and r > 1.2 * (b / a):
            ok = False
        g.append("%.1fx" % r)
    return g, ok
def table(res):
    """The rows, and whether every step of 10x cost at most 12x, by wall and by CPU time."""
    out = ["| command | " + " | ".join("%d backups: wall s (CPU s)" % n for n in sizes) +
           " | growth per 10x, wall | growth per 10x, CPU | peak RSS MiB at %d |" % sizes[-1],
           "|---|" + "---|" * (len(sizes) + 3)]
    wall_ok = cpu_ok = True
    for what, label in OPS:
        if not any((what, n) in res for n in sizes):
            continue
        gw, okw = growth(res, what, 0)
        gc, okc = growth(res, what, 3)
        # the goal is the issue's commands on repositories as virtsnap writes them now
        if what != "list-old":
            wall_ok, cpu_ok = wall_ok and okw, cpu_ok and okc
        rss = "%.1f" % res[(what, sizes[-1])][1] if (what, sizes[-1]) in res else "-"
        out.append("| %s | %s | %s | %s | %s |" % (label, " | ".join(cell(res, what, n) for n in sizes),
                                                   ", ".join(gw), ", ".join(gc), rss))
    return out, (wall_ok, cpu_ok)
def gc10m(res):
    if ("gc-10M", int(E["GC_BACKUPS"])) not in res:
        return "not measured", 0, 1
    w, rss, rc, cpu = res[("gc-10M", int(E["GC_BACKUPS"]))]
    return ("> %d s (timed out)" % T if rc == 124 else "%.1f s" % w + (" (CPU %.1f s)" % cpu if cpu is not None else "")), rss, rc
gcb = int(E["GC_BACKUPS"]); refs = gcb * int(E["GC_REFS"])
rows, growth_ok = table(res)
lines = ["## repo-scale", "",
         "`bench/repo-scale.sh [WORKDIR]` (as root: both passes; whole run %s s). Date: %s." % (E["T_TOTAL"], E["DATE"]), "",
         "Machine: %s; load average %s. First pass: no guest and no libvirt, the repository commands alone. "
         "The machine has 2 cores shared with other jobs: the cores were not idle (see the load average), "
         "so absolute times are high; the growth per 10x backups is what the goals judge." % (E["MACHINE"], E["LOADAVG"]), "",
         "Repositories made by `bench/repo-gen` (synthetic manifests over real chunks, each with the summary "
         "commit writes, except in the 'before summaries' row): each backup one domain with one disk of %s chunk "
         "references (4 KiB chunks; %s bytes of manifest a backup, most of it the domain XML and the chunk list), "
         "its window over %s distinct real chunks shifted by one from the backup before; backups an hour apart "
         "(or %s to a second of id for the ties row). Each command ran once to warm the cache, then %s times: the "
         "fastest wall time and the least CPU time reported (the runs least disturbed by the other jobs), peak "
         "RSS the highest; limit %d s a run. The real prune removes all but ~20 backups (a fresh copy each run), "
         "one fsync of backups/ for all it removes, then runs gc." %
         (E["REFS"], E["MANIFEST_BYTES"], E["DISTINCT"], E["TIES"], E["RUNS"], T), ""] + rows
gw, grss, grc = gc10m(res)
lines += ["", "`gc` on %d backups x %s references = %d chunk references (%s distinct chunks; one run after the "
          "warm-up): %s, peak RSS %.1f MiB (/usr/bin/time -v)." % (gcb, E["GC_REFS"], refs, E["GC_DISTINCT"], gw, grss)]
g_growth_ok = None
if gres:
    grows, g_growth_ok = table(gres)
    ggw, ggrss, ggrc = gc10m(gres)
    lines += ["", "With a running guest (%s), the same commands:" % E["GUEST_NOTE"], ""] + grows + \
             ["", "`gc` on the same %d references with the guest running: %s, peak RSS %.1f MiB." % (refs, ggw, ggrss)]
else:
    lines += ["", "With a running guest: %s." % E["GUEST_NOTE"]]
if E.get("BASELINE"):
    base = load(E["BASELINE"])
    brows, _ = table(base)
    bw, brss, _ = gc10m(base)
    lines += ["", "Before (%s), the same script on the same machine:" % E["BASELINE_LABEL"], ""] + brows + \
             ["", "`gc` on the same %d references: %s, peak RSS %.1f MiB." % (refs, bw, brss)]
big = sizes[-1]
lst = res.get(("list", big))
lines += ["", "Goals:",
          "- 10x the backups costs at most 12x the time (list, list with ties, verify, prune, gc; each step of 10x; steps from under 50 ms "
          "not judged: process start dominates): by CPU time (user+sys: the work, which the other jobs on the "
          "machine do not change) **%s**; by wall time **%s**%s" % ("met" if growth_ok[1] else "NOT met",
                                                                 "met" if growth_ok[0] else "NOT met",
          "" if g_growth_ok is None else "; with the guest running: by CPU time **%s**, by wall time **%s**" %
          ("met" if g_growth_ok[1] else "NOT met", "met" if g_growth_ok[0] else "NOT met")),
          "- (not a goal) `list` of a repository from before summaries, every manifest parsed once: %s per 10x "
          "by CPU time, %s by wall time (its first gc writes the summaries)" %
          (", ".join(growth(res, "list-old", 3)[0]), ", ".join(growth(res, "list-old", 0)[0])),
          "- `list` of %d backups under 2 s: **%s** (%s)" % (big, "met" if lst and lst[2] == 0 and lst[0] < 2 else "NOT met",
                                                        "%.3f s wall, %.2f s CPU" % (lst[0], lst[3]) if lst and lst[2] == 0
                                                        else "%s s" % cell(res, "list", big)),
          "- `gc` peak RSS under 256 MiB for %d references: **%s** (%.1f MiB)" % (refs, "met" if grc == 0 and grss < 256 else "NOT met", grss),
          "",
          "Reproduce: `bench/repo-scale.sh [WORKDIR]` after `meson setup build-bench && ninja -C build-bench` "
          "(env: VIRTSNAP, REPOGEN, SIZES, RUNS, REFS, DISTINCT, TIES, GC_BACKUPS, GC_REFS, GC_DISTINCT, TIMEOUT, RESULTS, "
          "BASELINE, BASELINE_LABEL, GUEST=0, NO_README=1). Needs `apt-get install time`; the guest pass needs root, libvirt and the test guest (tests/guest).", ""]
sec = "\n".join(lines)
print(); print(sec)
if E.get("NO_README") != "1":
    sys.path.insert(0, E["BENCH_DIR"])
    from readme_section import write_section
    write_section(E["README"], "repo-scale", sec)
PY
