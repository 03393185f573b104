#!/bin/bash
# quiesce-bench.sh [WORKDIR] -- issue 16's goal for `virtsnap quiesce`: a group of GUESTS (4)
# running guests is frozen in parallel, so the time from the first freeze call to the last
# guest frozen is below 2x the single-guest figure (a serial freeze, as Snap Creator's
# plug-in suspends its VMs one after another, would be 4x). Each round (ROUNDS, default 5)
# measures, in an order rotated from round to round:
#   group        `virtsnap quiesce --json` of all GUESTS guests at once
#   single       the same of one guest (a different one each round), the others running:
#                the same load as the group's, so the goal compares these two
#   single-idle  the same guest with the others paused (`virsh suspend`): their TCG vCPUs
#                off the 2 cores (idle but for other jobs), for comparison
# each followed at once by `virtsnap unquiesce TOKEN`. The figure is taken from quiesce's own
# JSON: max(frozen_at) - min(freeze_started_at) over the domains frozen (unix ms, per
# domain), i.e. first freeze call to last guest frozen; the command's wall time and the
# per-guest freeze_ms are reported beside it. There is no idle-cores row for the group: the
# guests frozen are the ones running. The guests are the minimal test guest (tests/guest:
# 1 vCPU, 256 MiB, TCG here) without its record writer (WRITER=1: with it).
# Prints the figures and writes the "## quiesce-bench" section of bench/README.md.
#
# Needs root, libvirtd, the test guest, jq, and a virtsnap with `quiesce` (main after the
# commit mentioning vs_quiesce). WORKDIR (default: the harness work dir under
# /tmp/virtsnap-tests) must be readable by libvirt-qemu; everything is removed on exit.
# Env: VIRTSNAP (binary; default build-bench/, else build/), ROUNDS=5, GUESTS=4, WRITER=0,
#      NO_README=1 (print only).
# Run it under the machine-wide lock: `flock /tmp/vs-integration.lock bash bench/quiesce-bench.sh`.
set -euo pipefail
VS_TEST_NAME=quiesce-bench
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$BENCH_DIR/../tests/lib/harness.sh"
. "$BENCH_DIR/lib.sh"
export BENCH_DIR

ROUNDS=${ROUNDS:-5}
GUESTS=${GUESTS:-4}
WRITER=${WRITER:-0}
README=$VS_SOURCE_ROOT/bench/README.md
T_START=$(date +%s)
LOAD_START=$(cut -d" " -f1-3 /proc/loadavg)

vs_require_root
bench_find_virtsnap build-bench build
command -v jq >/dev/null || vs_fail "jq missing: apt-get install jq"
"$VIRTSNAP" quiesce --help >/dev/null 2>&1 ||
  vs_fail "$VIRTSNAP has no quiesce command (build a tree that has vs_quiesce)"
[ "$GUESTS" -ge 2 ] || vs_fail "GUESTS=$GUESTS: a group needs at least 2"
vs_libvirt_up

bench_workdir quiesce-bench "${1:-}"
STATE=$W/state
RES=$W/results.tsv      # kind round span_ms wall_ms max_freeze_ms guests
: > "$RES"
[ "$WRITER" = 1 ] || export CMDLINE_EXTRA="ga_writer=0"

P=vst-qb-$$
DOMS=()
for i in $(seq "$GUESTS"); do
  vs_guest_disk "$W/d$i.qcow2" >/dev/null
  vs_guest_start "$P-$i" "$W/d$i.qcow2"
  DOMS+=("$P-$i")
done
BOOT_DONE=$(date +%s)

# quiesce_once KIND ROUND DOMAIN...: one quiesce and its unquiesce, the figures recorded.
quiesce_once() {
  local kind=$1 round=$2 p t0 t1 token span frozen
  shift 2
  p=$W/$kind.$round
  t0=$(ns)
  "$VIRTSNAP" quiesce --json --state-dir "$STATE" "$@" > "$p.json" 2> "$p.err" ||
    vs_fail "$kind #$round: quiesce $* failed: $(cat "$p.err")"
  t1=$(ns)
  token=$(jq -r .token "$p.json")
  "$VIRTSNAP" unquiesce --state-dir "$STATE" "$token" > "$p.un" 2>&1 ||
    vs_fail "$kind #$round: unquiesce $token failed: $(cat "$p.un")"
  frozen=$(jq '[.domains[] | select(.frozen)] | length' "$p.json")
  [ "$frozen" = $# ] || vs_fail "$kind #$round: $frozen of $# guests frozen: $(cat "$p.json")"
  span=$(jq '([.domains[].frozen_at] | max) - ([.domains[].freeze_started_at] | min)' "$p.json")
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$kind" "$round" "$span" $(( (t1 - t0) / 1000000 )) \
    "$(jq '[.domains[].freeze_ms] | max' "$p.json")" $# >> "$RES"
  vs_log "$kind #$round ($#): first freeze call to last frozen $span ms; command $(( (t1 - t0) / 1000000 )) ms"
}

others_of() { local d; for d in "${DOMS[@]}"; do [ "$d" = "$1" ] || echo "$d"; done; }

single_idle() {   # ROUND DOMAIN: the others paused around the measurement
  local d
  for d in $(others_of "$2"); do virsh suspend "$d" >/dev/null; done
  sleep 1
  quiesce_once single-idle "$1" "$2"
  for d in $(others_of "$2"); do virsh resume "$d" >/dev/null; done
}

# The first freeze after a boot pays for cold paths in the guests; one unrecorded warm-up.
"$VIRTSNAP" quiesce --json --state-dir "$STATE" "${DOMS[@]}" > "$W/warmup.json"
"$VIRTSNAP" unquiesce --state-dir "$STATE" "$(jq -r .token "$W/warmup.json")" >/dev/null

for r in $(seq "$ROUNDS"); do
  one=${DOMS[$(( (r - 1) % GUESTS ))]}
  case $(( r % 3 )) in
    1) quiesce_once group "$r" "${DOMS[@]}"; sleep 1; quiesce_once single "$r" "$one"; sleep 1; single_idle "$r" "$one" ;;
    2) quiesce_once single "$r" "$one"; sleep 1; single_idle "$r" "$one"; sleep 1; quiesce_once group "$r" "${DOMS[@]}" ;;
    0) single_idle "$r" "$one"; sleep 1; quiesce_once group "$r" "${DOMS[@]}"; sleep 1; quiesce_once single "$r" "$one" ;;
  esac
  sleep 1
done

# ---------------------------------------------------------------- report

# the tree the binary was built in (VIRTSNAP may be another tree's build)
GIT_V=$(git -C "$(dirname "$VIRTSNAP")" describe --always --dirty 2>/dev/null || echo "?")
export RES README ROUNDS GUESTS WRITER GIT_V LOAD_START T_START BOOT_DONE
export LOAD_END="$(cut -d" " -f1-3 /proc/loadavg)" NO_README=${NO_README:-0} NPROC=$(nproc)
export MACHINE="$(. /etc/os-release; echo "$PRETTY_NAME"); nproc $(nproc); CPU $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo); kernel $(uname -r)"
export LIBVIRT_V="$(virsh version --daemon 2>/dev/null | awk '/Running against daemon/ { print $NF }')"
export QEMU_V="$(qemu-system-x86_64 --version | head -n1 | awk '{ print $4 }')"
export VIRT_TYPE="$(virsh dumpxml "${DOMS[0]}" | sed -n "s/^<domain type='\([a-z]*\)'.*/\1/p")"
python3 - <<'PY'
import os, sys, statistics, time
E = os.environ
res = {}
for line in open(E["RES"]):
    kind, rnd, span, wall, fms, n = line.split("\t")
    res.setdefault(kind, []).append((float(span), float(wall), float(fms)))
def col(kind, i): return [v[i] for v in res[kind]]
def med(kind, i=0): return statistics.median(col(kind, i))
def fmt(kind, i):
    v = col(kind, i)
    return "%.0f [%.0f-%.0f]" % (statistics.median(v), min(v), max(v))
n = int(E["GUESTS"])
names = {"group": "group of %d guests (`quiesce` of all at once)" % n,
         "single": "one guest, the other %d running (same load as the group)" % (n - 1),
         "single-idle": "one guest, the other %d paused (cores idle)" % (n - 1)}
rows = ["| %s | %d | %s | %s | %s |" % (names[k], len(res[k]), fmt(k, 0), fmt(k, 2), fmt(k, 1))
        for k in ("group", "single", "single-idle")]
ratio = med("group") / med("single") if med("single") > 0 else float("inf")
ratio_idle = med("group") / med("single-idle") if med("single-idle") > 0 else float("inf")
sec = "\n".join([
    "## quiesce-bench", "",
    "`bench/quiesce-bench.sh [WORKDIR]` (root; %s rounds, the three measurements of a round in a rotated "
    "order; whole run %d s of which %d s booting the guests). Date: %s." % (
        E["ROUNDS"], time.time() - float(E["T_START"]), float(E["BOOT_DONE"]) - float(E["T_START"]),
        time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())),
    "",
    "Machine: %s; libvirt %s; QEMU %s (guest domain type '%s', 1 vCPU, 256 MiB each); virtsnap git %s; "
    "load average %s at the start, %s at the end (other jobs share the machine)." % (
        E["MACHINE"], E["LIBVIRT_V"], E["QEMU_V"], E["VIRT_TYPE"], E["GIT_V"], E["LOAD_START"], E["LOAD_END"]),
    "",
    "%d minimal test guests (tests/guest, %s) run throughout: they are what is frozen, so unlike the other "
    "benchmarks there is no figure with idle cores for the group; for one guest there is (the others paused). "
    "Each `virtsnap quiesce --json` is followed at once by `virtsnap unquiesce TOKEN`. Span = "
    "max(frozen_at) - min(freeze_started_at) over the guests of one quiesce (unix ms from its JSON): from "
    "the first freeze call to the last guest frozen. freeze_ms: the longest of the guests' own freeze "
    "calls. Command: the wall time of `quiesce` (process start, libvirt connection, the guardian armed)." % (
        n, "with its record writer" if E["WRITER"] == "1" else "without its record writer"),
    "",
    "| quiesce | runs | span ms, median [range] | freeze_ms (max over the guests), median [range] | command ms, median [range] |",
    "|---|---|---|---|---|",
] + rows + ["",
    "Goal (issue 16): the group's span below 2x the single guest's (a serial freeze would be %dx): **%s** "
    "(%.0f ms / %.0f ms = %.2fx; against the single guest with idle cores: %.2fx)." % (
        n, "met" if ratio < 2 else "NOT met", med("group"), med("single"), ratio, ratio_idle),
    "",
    "Why the group is not 1x: every freeze call is made at once (a thread per guest), but each guest's "
    "agent must run to answer, and here %d TCG vCPUs share %s cores with the machine's other jobs (see the "
    "load average): the last guest's agent waits its turn. A serial freeze would add the guests' times "
    "up (about %dx)." % (n, E["NPROC"], n),
    "",
    "Reproduce: `flock /tmp/vs-integration.lock bash bench/quiesce-bench.sh [WORKDIR]` (root; env: VIRTSNAP, "
    "ROUNDS, GUESTS, WRITER=1, NO_README=1).", ""])
print()
print(sec)
if E.get("NO_README") != "1":
    sys.path.insert(0, E["BENCH_DIR"])
    from readme_section import write_section
    write_section(E["README"], "quiesce-bench", sec)
PY
