# bench/lib.sh -- what the benchmarks share, sourced after tests/lib/harness.sh: timing,
# the cache drop before each run, running a tool under /usr/bin/time -v with its process
# tree's memory sampled (measure), and the test data every bench uses (bench_make_data).
# BENCH_DIR must be exported for the report code (bench/readme_section.py).

ns() { date +%s%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b - a) / 1e9 }'; }
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }
cached_state() {   # how much of FILE is in the page cache (fincore), "?" if unknown
  fincore -nb -o RES "$1" 2>/dev/null | awk '{ printf "%d MiB", $1 / 1048576 }' || echo "?"
}

# Peak of the summed RSS (KiB) of every descendant of PID (not PID itself: /usr/bin/time),
# sampled every 100 ms until PID exits; written to OUT.
tree_rss_sampler() {
  local root=$1 out=$2 peak=0 ppeak=0 cur pids pss who=""
  set +e +o pipefail      # runs in the background: a process vanishing mid-sample is normal
  while kill -0 "$root" 2>/dev/null; do
    cur=$(ps -e -o pid=,ppid=,rss=,comm= 2>/dev/null | awk -v r="$root" '
      { pp[$1] = $2; rss[$1] = $3; c[$1] = $4 }
      END { for (p in pp) { q = pp[p]; n = 0
              while (q != "" && q != 0 && q != r && n++ < 64) q = pp[q]
              if (q == r) { s += rss[p]; l = l " /proc/" p "/smaps_rollup"
                            w = w " " c[p] "=" int(rss[p] / 1024) "M" } }
            print s + 0, w; print l }')
    pids=${cur#*$'\n'}; cur=${cur%%$'\n'*}
    # PSS: shared pages (libraries, the helpers' common code) counted once in all
    pss=0
    [ -z "${pids// /}" ] || pss=$(cat $pids 2>/dev/null </dev/null | awk '/^Pss:/ { s += $2 } END { print s + 0 }')
    [ "${cur%% *}" -le "$peak" ] || { peak=${cur%% *}; who=${cur#* }; }
    [ "$pss" -le "$ppeak" ] || ppeak=$pss
    sleep 0.1
  done
  echo "$peak $ppeak" > "$out"
  echo "$who" > "$out.who"
}

# measure PREFIX CMD...: runs CMD under /usr/bin/time -v with the tree sampler; stdout to
# PREFIX.out, stderr to PREFIX.err. Sets M_WALL (s), M_RSS (KiB, time -v), M_TREE (KiB), M_RC.
measure() {
  local p=$1 t0 t1 pid spid
  shift
  t0=$(ns)
  /usr/bin/time -v -o "$p.time" "$@" > "$p.out" 2> "$p.err" &
  pid=$!
  tree_rss_sampler "$pid" "$p.tree" &
  spid=$!
  M_RC=0; wait "$pid" || M_RC=$?
  t1=$(ns)
  wait "$spid" || true
  M_WALL=$(secs "$t0" "$t1")
  M_RSS=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$p.time")
  M_RSS=${M_RSS:-0}
  read -r M_TREE M_PSS < "$p.tree" || { M_TREE=0; M_PSS=0; }
  M_CPU=$(awk -F': ' '/User time|System time/ { s += $2 } END { printf "%.1f", s }' "$p.time")
  M_TREE="$M_TREE/$M_PSS/$M_CPU"     # recorded as one field: rss/pss/cpu
}

# bench_find_virtsnap BUILDDIR...: $VIRTSNAP, else the first BUILDDIR (under the source
# root) holding tools/virtsnap; fails naming the first BUILDDIR to build.
bench_find_virtsnap() {
  local b
  for b in "$@"; do
    [ -n "${VIRTSNAP:-}" ] || [ ! -x "$VS_SOURCE_ROOT/$b/tools/virtsnap" ] || VIRTSNAP=$VS_SOURCE_ROOT/$b/tools/virtsnap
  done
  [ -x "${VIRTSNAP:-}" ] || vs_fail "no virtsnap binary: ninja -C $1, or set VIRTSNAP"
}

# bench_workdir NAME [DIR]: sets W, a fresh NAME.PID under DIR (removed on exit), or the
# harness work dir's bench/; readable by libvirt-qemu either way.
bench_workdir() {
  if [ -n "${2:-}" ]; then
    mkdir -p "$2"
    W=$(cd "$2" && pwd)/$1.$$
    mkdir "$W"
    vs_on_exit rm -rf --one-file-system "$W"
  else
    W=$(vs_workdir)/bench
    mkdir -p "$W"
  fi
  chmod 755 "$W" "$(dirname "$W")"
}

# fsync_time FILE...: seconds an fsync of the files takes right after the tool (a tool that
# synced its output itself gets ~0): each tool is compared with its data on disk.
fsync_time() { local t0; t0=$(ns); sync "$@"; secs "$t0" "$(ns)"; }

# bench_make_data SRC RAND_MIB TEXT_MIB: RAND_MIB of random data and TEXT_MIB of log-like
# text in SRC/rand and SRC/logs, four files each. The text lines all differ (sequence
# number, time, ids), so it compresses (~4-6x) but 1 MiB chunks of it never repeat: no tool
# gets dedup for free.
bench_make_data() {
  local SRC=$1 RAND_MIB=$2 TEXT_MIB=$3 i nrand=4 ntext=4
  mkdir -p "$SRC/rand" "$SRC/logs"
  for i in $(seq 1 $nrand); do
    head -c $((RAND_MIB * 1048576 / nrand)) /dev/urandom > "$SRC/rand/blob-$i.bin"
  done
  for i in $(seq 1 $ntext); do
    awk -v n=$((TEXT_MIB * 1048576 / ntext)) -v f="$i" 'BEGIN {
      srand(f); split("GET POST PUT DELETE", m, " "); split("200 200 200 201 204 301 404 500", st, " ")
      while (out < n) {
        line = sprintf("2024-05-%02d %02d:%02d:%02d.%06d app%d[%d]: req=%08x %s /api/v2/items/%d/detail user=u%05d status=%s bytes=%d ms=%.2f\n",
          f, (k / 3600000) % 24, (k / 60000) % 60, (k / 1000) % 60, k % 1000000, f, 1000 + k % 7,
          k, m[1 + k % 4], int(rand() * 100000), int(rand() * 50000), st[1 + int(rand() * 8)],
          int(rand() * 65536), rand() * 300)
        printf "%s", line; out += length(line); k++ } }' > "$SRC/logs/app-$i.log"
  done
}
