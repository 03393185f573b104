#!/bin/bash
# net-bench.sh [SIZE_MIB] -- the NFS (v3, v4) and iSCSI sources against qemu-img convert, in
# one run, reading the same SIZE_MIB (default 1024) image of random data from a loopback
# nfs-ganesha export and a tgtd LUN (tests/targets, started through tests/lib/harness.sh):
#
#   qemu-img    `qemu-img convert -n --target-image-opts URL driver=null-co,size=N`: reads
#               the whole source and discards it (qemu 7.2: nfs:// is NFSv3 only, so v4 is
#               compared against the v3 figure)
#   read        `netio read URL -`: vs_source_pread through the source, 4 MiB calls, discarded
#   engine      `netio backup URL REPO`: the copy engine into a fresh repository (hash,
#               compress, store), with the source's preferred reader threads; also once per
#               run from the same bytes in a local file (the engine's own ceiling here)
#
# Each runs RUNS times (default 3), interleaved; the image stays in the page cache on the
# server side for all of them (same state for every tool). Prints a table and writes the
# "## net-bench" section of bench/README.md (other sections kept; NO_README=1: print only).
# Goal (issue 5): our read at least 1.5x qemu-img's throughput on each path.
# Needs root, tgt, nfs-ganesha, qemu-utils + qemu-block-extra; NETIO, VIRTSNAP default to
# the first of build-bench/, build-n/, build/ that has them.
set -euo pipefail
VS_TEST_NAME=net-bench
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export BENCH_DIR
. "$BENCH_DIR/../tests/lib/harness.sh"
vs_require_root

SIZE_MIB=${1:-${SIZE_MIB:-1024}}
RUNS=${RUNS:-3}
README=$VS_SOURCE_ROOT/bench/README.md
for b in build-bench build-n build; do
  [ -n "${NETIO:-}" ] || { [ -x "$VS_SOURCE_ROOT/$b/tests/block/source/netio" ] && NETIO=$VS_SOURCE_ROOT/$b/tests/block/source/netio; } || true
done
[ -x "${NETIO:-}" ] || vs_fail "netio not built (meson setup build-bench && ninja -C build-bench)"
command -v qemu-img >/dev/null || vs_skip "qemu-img not installed"
W=$(vs_workdir)
T_START=$(date +%s)
LOAD_START=$(cut -d" " -f1-3 /proc/loadavg)
BYTES=$((SIZE_MIB * 1048576))

vs_log "making a ${SIZE_MIB} MiB image of random data"
mkdir -p "$W/iscsi"
head -c "$BYTES" /dev/urandom > "$W/iscsi/lun1.img"     # the LUN's backing file, as is
ISCSI_SIZE=$BYTES ISCSI_LUNS=1 vs_iscsi_start
vs_nfs_start
cp "$W/iscsi/lun1.img" "$NFS_EXPORT_DIR/d.img"

declare -A URL=(
  [nfs3]="$NFS_URL/d.img"
  [nfs4]="$NFS_URL/d.img$NFS_V4_ARGS"
  [iscsi]="$ISCSI_URL_1"
)
declare -A QURL=([nfs3]="$NFS_URL/d.img" [nfs4]="$NFS_URL/d.img" [iscsi]="$ISCSI_URL_1")
RES=$W/results    # lines: path tool run secs
: > "$RES"

timed() {   # timed PATH TOOL RUN CMD...: appends the wall time of a successful CMD
  local p=$1 t=$2 r=$3 t0 t1 out; shift 3
  t0=$(date +%s%N)
  out=$("$@" 2>&1) || vs_fail "$p $t run $r: $*: $out"
  t1=$(date +%s%N)
  echo "$p $t $r $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')" >> "$RES"
  vs_log "$p $t run $r: $(tail -n1 "$RES" | cut -d' ' -f4) s"
}

for r in $(seq 1 "$RUNS"); do
  for p in nfs3 nfs4 iscsi; do
    if [ "$p" != nfs4 ]; then
      timed "$p" qemu-img "$r" qemu-img convert -n --target-image-opts "${QURL[$p]}" "driver=null-co,size=$BYTES"
    fi
    timed "$p" read "$r" "$NETIO" read "${URL[$p]}" -
    rm -rf "$W/repo"
    timed "$p" engine "$r" "$NETIO" backup "${URL[$p]}" "$W/repo"
    rm -rf "$W/repo"
  done
  # the same engine on the same bytes in a local file: what the engine does without a network
  timed local engine "$r" "$NETIO" backup "$W/iscsi/lun1.img" "$W/repo"
  rm -rf "$W/repo"
done
# one check that the bytes are right, so that speed is not bought with wrong data
for p in nfs3 nfs4 iscsi; do
  "$NETIO" read "${URL[$p]}" "$W/check.img" >/dev/null
  cmp "$W/check.img" "$W/iscsi/lun1.img" || vs_fail "$p: read back differs"
  rm -f "$W/check.img"
done

GIT_V=$(git -C "$VS_SOURCE_ROOT" describe --always --dirty 2>/dev/null || echo "?")
QEMU_V=$(qemu-img --version | head -n1 | awk '{ print $3 }')
export RES README BYTES SIZE_MIB RUNS GIT_V QEMU_V LOAD_START T_START
export LOAD_END="$(cut -d" " -f1-3 /proc/loadavg)" NO_README=${NO_README:-0}
export MACHINE="$(. /etc/os-release; echo "$PRETTY_NAME"); nproc $(nproc); $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo); kernel $(uname -r)"
export TGT_V="$(dpkg-query -W -f='${Version}' tgt 2>/dev/null)" GANESHA_V="$(dpkg-query -W -f='${Version}' nfs-ganesha 2>/dev/null)"
export LIBNFS_V="$(pkg-config --modversion libnfs)" LIBISCSI_V="$(pkg-config --modversion libiscsi)"
python3 - <<'PY'
import os, sys, statistics, time
E = os.environ
res = {}
for line in open(E["RES"]):
    p, t, r, s = line.split()
    res.setdefault((p, t), []).append(float(s))
mb = float(E["BYTES"]) / 1e6
def med(p, t): return statistics.median(res[(p, t)])
def fmt(p, t):
    v = res[(p, t)]
    return "%.2f [%.2f-%.2f]" % (med(p, t), min(v), max(v)), "%.0f [%.0f-%.0f]" % (mb / med(p, t), mb / max(v), mb / min(v))
names = {"nfs3": "nfs:// v3", "nfs4": "nfs:// v4", "iscsi": "iscsi://"}
tools = {"qemu-img": "qemu-img convert to null-co", "read": "virtsnap source, plain read",
         "engine": "virtsnap copy engine into a repository"}
rows, goals = [], []
for p in ("nfs3", "nfs4", "iscsi"):
    q = "nfs3" if p == "nfs4" else p
    for t in ("qemu-img", "read", "engine"):
        if (p, t) not in res:
            continue
        w, m = fmt(p, t)
        ratio = "" if t == "qemu-img" else "%.2fx" % (med(q, "qemu-img") / med(p, t))
        rows.append("| %s | %s | %d | %s | %s | %s |" % (names[p], tools[t], len(res[(p, t)]), w, m, ratio))
    r = med(q, "qemu-img") / med(p, "read")
    goals.append("- %s plain read at least 1.5x qemu-img convert%s: **%s** (%.2fx: %.0f vs %.0f MB/s median)" % (
        names[p], " (v3, qemu has no v4)" if p == "nfs4" else "", "met" if r >= 1.5 else "NOT met", r,
        mb / med(p, "read"), mb / med(q, "qemu-img")))
    r = med(q, "qemu-img") / med(p, "engine")
    goals.append("- %s copy engine (hash + compress + store) at least 1.5x qemu-img convert: **%s** (%.2fx)" % (
        names[p], "met" if r >= 1.5 else "NOT met", r))
w, m = fmt("local", "engine")
rows.append("| local file (same bytes) | virtsnap copy engine into a repository | %d | %s | %s | |" % (
    len(res[("local", "engine")]), w, m))
ctx = ["- %s copy engine: %.2fx the throughput of the same engine from a local file" % (
    names[p], med("local", "engine") / med(p, "engine")) for p in ("nfs3", "nfs4", "iscsi")]
sec = "\n".join([
    "## net-bench", "",
    "`bench/net-bench.sh [SIZE_MIB]` (root; %s runs per tool, interleaved; whole run %d s). Date: %s." % (
        E["RUNS"], time.time() - float(E["T_START"]), time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())),
    "",
    "Machine: %s; tgt %s, nfs-ganesha %s (FSAL VFS), both on 127.0.0.1; libnfs %s, libiscsi %s; qemu-img %s; "
    "virtsnap git %s; load average %s at the start, %s at the end (other jobs share the machine)." % (
        E["MACHINE"], E["TGT_V"], E["GANESHA_V"], E["LIBNFS_V"], E["LIBISCSI_V"], E["QEMU_V"], E["GIT_V"],
        E["LOAD_START"], E["LOAD_END"]),
    "",
    "Data: %s MiB of random data (incompressible), the same bytes as a file on the NFS export and as the "
    "LUN's backing file, in the server's page cache for every run. MB/s = 10^6 bytes/s over the wall time "
    "of the whole command (connect included). Ratio: qemu-img's wall time / ours (>1: we are faster)." % E["SIZE_MIB"],
    "",
    "| path | tool | runs | wall s, median [range] | MB/s, median [range] | vs qemu-img |",
    "|---|---|---|---|---|---|",
] + rows + ["", "Goals:"] + goals + ["", "The engine against itself without a network:"] + ctx + ["",
    "qemu-img: `qemu-img convert -n --target-image-opts URL driver=null-co,size=N` (reads the source, "
    "discards the data; qemu 7.2's nfs driver speaks NFSv3 only). read: `netio read URL -` "
    "(tests/block/source/netio.c: vs_source_pread in 4 MiB calls; NFS: 1 MiB READs, 8 in flight; iSCSI: "
    "512 KiB READ16s, 16 in flight). engine: `netio backup URL REPO` (vs_copy_source_to_repo into a fresh "
    "repository: SHA-256, zstd and chunk files on the same 2 cores; NFS with 2 reader connections). "
    "The engine hashes and compresses every byte on these 2 cores (the local-file row is that alone, "
    "no network) while qemu-img only reads; over loopback the target (ganesha, tgtd) needs CPU from the "
    "same 2 cores as well.",
    "",
    "Reproduce: `sudo bench/net-bench.sh [SIZE_MIB]` after `meson setup build-bench && ninja -C build-bench` "
    "(env: RUNS, NETIO, NO_README=1).", ""])
print()
print(sec)
if E.get("NO_README") != "1":
    sys.path.insert(0, E["BENCH_DIR"])
    from readme_section import write_section
    write_section(E["README"], "net-bench", sec)
PY
