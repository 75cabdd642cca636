#!/usr/bin/env bash
# Runs every suite `make test` owns and ends with one line "N passed, N failed"
# over all of them; exits non-zero on any failure.
#   scripts/run-tests.sh [--unit-only] [integration test names...]
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
unit_dir=${CCPROXY_UNIT_DIR:-$here/build/tests}
replay_dir=${CCPROXY_REPLAY_DIR:-$here/build/fuzz-replay}
passed=0 failed=0 unit_only=0
[ "${1:-}" = "--unit-only" ] && { unit_only=1; shift; }
log_dir=$(mktemp -d /tmp/ccproxy-tests.XXXXXX)

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:halt_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# ---- unit (cmocka): each binary prints its own "[  PASSED  ] N test(s)." ----
for t in "$unit_dir"/test_*; do
    [ -x "$t" ] || continue
    name=$(basename "$t")
    out="$log_dir/$name.log"
    "$t" > "$out" 2>&1
    rc=$?
    p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$out" | tail -1)
    f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$out" | tail -1)
    p=${p:-0} f=${f:-0}
    # A crash or sanitizer report without a cmocka verdict still fails.
    if [ $rc -ne 0 ] && [ "$f" = 0 ]; then f=1; fi
    if grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$out"; then f=$((f + 1)); fi
    passed=$((passed + p)) failed=$((failed + f))
    if [ "$f" != 0 ]; then echo "unit $name: $p passed, $f failed"; cat "$out"; else echo "unit $name: $p passed"; fi
done

# ---- fuzz replay: each target over its corpus and regression inputs, once
# (no libFuzzer); one test per target. ----
for t in "$replay_dir"/*; do
    [ -x "$t" ] || continue
    name=$(basename "$t")
    out="$log_dir/replay-$name.log"
    "$t" "$here/tests/fuzz/corpus/$name" "$here/tests/fuzz/regressions/$name" > "$out" 2>&1
    rc=$?
    n=$(sed -n 's/^replay [^:]*: \([0-9]*\) inputs$/\1/p' "$out" | tail -1)
    if [ $rc -ne 0 ] || [ -z "$n" ] || grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$out"; then
        failed=$((failed + 1)); echo "fuzz replay $name: failed"; cat "$out"
    else
        passed=$((passed + 1)); echo "fuzz replay $name: $n inputs"
    fi
done

# Adds a runner's last "<name>: N passed, M failed" line in file $2 to the
# totals; a runner that ended without one counts as one failure.
count_verdict() {
    line=$(grep -E "^$1: [0-9]+ passed, [0-9]+ failed" "$2" | tail -1)
    if [ -n "$line" ]; then
        p=$(echo "$line" | sed "s/^$1: \([0-9]*\) passed.*/\1/")
        f=$(echo "$line" | sed 's/.* \([0-9]*\) failed.*/\1/')
    else
        echo "$1: the runner ended without a verdict"; p=0 f=1
    fi
    passed=$((passed + p)) failed=$((failed + f))
}

# ---- integration: the real stack (mock upstream, nginx, spawn-fcgi, CGI) ----
if [ $unit_only = 0 ]; then
    out="$log_dir/integration.log"
    python3 "$here/tests/integration/run.py" "$@" 2>&1 | tee "$out"
    count_verdict integration "$out"
fi

# ---- soak: a short one (tests/soak/soak.py) over the same binaries; each of its
# checks counts. Skipped when integration tests were named (a filtered run). ----
if [ $unit_only = 0 ] && [ $# = 0 ] && [ "${CCPROXY_SOAK:-1}" != 0 ]; then
    out="$log_dir/soak.log"
    python3 "$here/tests/soak/soak.py" --seconds "${SOAK_TEST_SECONDS:-20}" 2>&1 | tee "$out"
    count_verdict soak "$out"
fi

rm -rf "$log_dir"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
