#!/bin/bash
# scripts/test.sh -- the one command that proves the tree: installs what is missing
# (scripts/deps.sh --test), builds, runs every meson test (unit, xml, fuzz corpus replay,
# integration with real guests and targets), then builds the clang/libFuzzer tree and runs
# its fuzz suite. Every phase runs even if an earlier one failed, so one broken test or
# file does not hide the state of everything else; a phase that fails to configure or
# build counts as one failed test. The last line is always "N passed, N failed, N skipped";
# the exit status is 0 only with no failure and at least one test actually run.
#
# Env: VS_BUILD_DIR (default build), VS_FUZZ_BUILD_DIR (default build-fuzz) -- relative to
# the repository root; MESON_TEST_ARGS (extra args for the main `meson test`).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 1
B=${VS_BUILD_DIR:-build}
F=${VS_FUZZ_BUILD_DIR:-build-fuzz}
PY=/usr/bin/python3          # python3 in PATH may be a pyenv shim without Debian's modules

phase_failures=()
fail_phase() { echo "test.sh: PHASE FAILED: $1" >&2; phase_failures+=("$1"); }
say() { echo; echo "== $*  [$(date +%T)]"; }
T0=$(date +%s)

# meson setup, or --reconfigure an existing dir; a dir that cannot be reconfigured (other
# meson version, broken coredata) is wiped and set up from scratch.
configure() {   # DIR [setup args...]; env CC etc. pass through
  local dir=$1; shift
  if [ -f "$dir/meson-private/coredata.dat" ]; then
    meson setup --reconfigure "$dir" "$@" && return 0
    echo "test.sh: reconfigure of $dir failed: wiping it" >&2
  fi
  rm -rf "$dir"
  meson setup "$dir" "$@"
}

# Build; on failure still build every target that can be built (ninja -k 0), so the tests
# of intact parts run (with --no-rebuild) and report.
build() {       # DIR NAME -> sets NOREBUILD
  NOREBUILD=""
  if ! meson compile -C "$1"; then
    fail_phase "$2 compile"
    ninja -C "$1" -k 0 >/dev/null 2>&1 || true
    NOREBUILD=--no-rebuild
  fi
}

run_tests() {   # DIR NAME meson-test-args...
  local dir=$1 name=$2; shift 2
  rm -f "$dir/meson-logs/testlog.json"
  meson test -C "$dir" $NOREBUILD --print-errorlogs "$@"
  local rc=$?
  if [ ! -f "$dir/meson-logs/testlog.json" ] && [ "$rc" != 0 ]; then
    fail_phase "$name (meson test exit $rc, no test log)"
  fi
}

has_suite() {   # DIR SUITE: does the configured tree define a test in SUITE?
  "$PY" -c 'import json, sys
tests = json.load(open(sys.argv[1] + "/meson-info/intro-tests.json"))
sys.exit(0 if any(s.split(":")[-1] == sys.argv[2] for t in tests for s in t["suite"]) else 1)' "$1" "$2" 2>/dev/null
}

say "dependencies (scripts/deps.sh --test)"
./scripts/deps.sh --test || fail_phase "deps"

if [ "$(id -u)" = 0 ]; then
  . "$ROOT/tests/lib/daemons.sh"
  say "libvirt daemons"
  vs_daemons_up || echo "test.sh: WARNING: libvirtd not answering; integration tests will fail" >&2
  # Built once here rather than inside the first integration test, so that test's time
  # (and timeout) covers only what it tests. The cache is reused across runs.
  say "test guest image"
  ( . "$ROOT/tests/lib/guest.sh" && vs_guest_prepare ) ||
    echo "test.sh: WARNING: test guest not built; integration tests will report it" >&2
fi

say "configure $B"
if configure "$B"; then
  say "build $B"
  build "$B" main
  say "tests in $B"
  # shellcheck disable=SC2086
  run_tests "$B" "main tests" --num-processes 2 ${MESON_TEST_ARGS:-}
else
  fail_phase "main configure"
fi

if [ "$(id -u)" = 0 ]; then
  # a test killed by its timeout is reaped in the background; the last one has no successor
  # whose harness start would sweep up after it
  sleep 1; VS_TEST_NAME=final-sweep bash tests/lib/harness.sh 2>&1 | grep -v 'final-sweep: PASS' || true
fi

say "configure $F (CC=clang, -Dfuzzing=true)"
if CC=clang configure "$F" -Dfuzzing=true; then
  say "build $F"
  build "$F" fuzz
  say "fuzz suite in $F"
  if has_suite "$F" fuzz; then
    # 10 s per target here keeps the whole command inside CI's 30-minute budget (seven
    # targets, two at a time; the whole run took 28.9 min with 30 s once issue 15's tests
    # came): a smoke test of each target on its seeds. A real campaign:
    # VIRTSNAP_FUZZ_SECONDS=600 scripts/test.sh.
    VIRTSNAP_FUZZ_SECONDS=${VIRTSNAP_FUZZ_SECONDS:-10} run_tests "$F" "fuzz tests" --suite fuzz
  else
    rm -f "$F/meson-logs/testlog.json"
    echo "test.sh: no tests in the fuzz suite yet"
  fi
else
  fail_phase "fuzz configure"
fi

say "summary ($(( $(date +%s) - T0 )) s)"
PHASES=$(printf '%s\n' "${phase_failures[@]+"${phase_failures[@]}"}") \
"$PY" - "$B/meson-logs/testlog.json" "$F/meson-logs/testlog.json" <<'EOF'
import json, os, sys
PASS = {"OK", "EXPECTEDFAIL"}
SKIP = {"SKIP"}
passed = failed = skipped = 0
rows = []
for path in sys.argv[1:]:
    if not os.path.exists(path):
        continue
    build = path.split("/meson-logs/")[0]
    # meson 1.0's testlog.json has no suite field: take it from the introspection data
    suites = {}
    try:
        for t in json.load(open(build + "/meson-info/intro-tests.json")):
            suites[t["name"]] = ",".join(s.split(":")[-1] for s in t["suite"])
    except (OSError, ValueError, KeyError):
        pass
    for line in open(path, encoding="utf-8", errors="replace"):
        line = line.strip()
        if not line:
            continue
        try:
            t = json.loads(line)
        except ValueError:
            continue
        r = t.get("result", "ERROR")
        name = t.get("name", "?")
        if " / " in name:       # "project:suite / test" when meson qualifies the name
            q, name = name.split(" / ", 1)
            suite = q.split(":")[-1]
        else:
            suite = suites.get(name, "-")
        t["name"] = name
        if r in PASS:
            passed += 1
        elif r in SKIP:
            skipped += 1
            rows.append((r, build, suite, t.get("name", "?"), t.get("duration", 0)))
        else:
            failed += 1
            rows.append((r, build, suite, t.get("name", "?"), t.get("duration", 0)))
phases = [p for p in os.environ.get("PHASES", "").split("\n") if p]
for p in phases:
    failed += 1
    rows.append(("FAIL", "-", "phase", p, 0))
if rows:
    print(f"{'RESULT':<14} {'BUILD':<12} {'SUITE':<12} {'TEST':<40} TIME")
    order = {"SKIP": 1}
    for r, b, s, n, d in sorted(rows, key=lambda x: (order.get(x[0], 0), x[1], x[3])):
        print(f"{r:<14} {b:<12} {s:<12} {n:<40} {d:6.1f}s")
else:
    print("no failed or skipped tests")
if passed + failed == 0:
    print("test.sh: ERROR: no test ran at all -- that is not a pass")
print(f"{passed} passed, {failed} failed, {skipped} skipped")
sys.exit(0 if failed == 0 and passed + failed > 0 else 1)
EOF
