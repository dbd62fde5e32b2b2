#!/usr/bin/env bash
# Runs every cmocka test binary in BUILD/tests, then the valgrind subset,
# and prints one closing line "tests: N passed, M failed".
set -uo pipefail
build=${1:-build}
passed=0
failed=0
failed_bins=()
export SAMBENCH_BIN=${SAMBENCH_BIN:-$build/bin/sambench}
export SAMBENCH_TEST_TMP=${SAMBENCH_TEST_TMP:-$(mktemp -d)}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/tests/lsan.supp:print_suppressions=0}
# Tests run single-threaded unless they say otherwise (the machine is shared).
export SAMBENCH_THREADS=${SAMBENCH_THREADS:-1}
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
trap 'rm -rf "$SAMBENCH_TEST_TMP"' EXIT

count_line() { # cmocka: "[  PASSED  ] N test(s)." / "[  FAILED  ] N test(s), listed below:"
    sed -n "s/^\[  $1  \] \([0-9]*\) test.*/\1/p" "$2" | tail -n 1
}

for t in "$build"/tests/test_*; do
    [ -x "$t" ] || continue
    name=$(basename "$t")
    log="$SAMBENCH_TEST_TMP/$name.log"
    start=$(date +%s.%N)
    "$t" >"$log" 2>&1
    rc=$?
    secs=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN{printf "%.1f", e-s}')
    p=$(count_line PASSED "$log"); f=$(count_line FAILED "$log")
    p=${p:-0}; f=${f:-0}
    if [ $rc -ne 0 ] && [ "$f" = 0 ]; then f=1; fi # crashed before cmocka's summary
    passed=$((passed + p)); failed=$((failed + f))
    if [ $rc -ne 0 ]; then
        failed_bins+=("$name")
        echo "---- $name FAILED (exit $rc, ${secs}s) ----"
        tail -n 60 "$log"
    else
        echo "ok   $name: $p passed (${secs}s)"
    fi
done

for v in ${VALGRIND_TESTS:-}; do
    t="$build/tests/$v"
    [ -x "$t" ] || continue
    if ! command -v valgrind >/dev/null; then echo "valgrind missing"; failed=$((failed + 1)); continue; fi
    log="$SAMBENCH_TEST_TMP/valgrind-$v.log"
    if valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
        --suppressions=tests/valgrind.supp "$t" >"$log" 2>&1; then
        echo "ok   valgrind $v: no errors, no definite leaks"
        passed=$((passed + 1))
    else
        echo "---- valgrind $v FAILED ----"; tail -n 60 "$log"
        failed=$((failed + 1)); failed_bins+=("valgrind:$v")
    fi
done

# The real one-node Slurm test (issue 9: CI runs it, it takes well under 5 minutes).
if [ -n "${SAMBENCH_TEST_SLURM:-}" ]; then
    log="$SAMBENCH_TEST_TMP/slurm.log"
    if bash tests/slurm/test_slurm.sh "$build" >"$log" 2>&1; then
        echo "ok   test-slurm: $(tail -n 1 "$log")"
        passed=$((passed + 1))
    else
        echo "---- test-slurm FAILED ----"; tail -n 40 "$log"
        failed=$((failed + 1)); failed_bins+=("test-slurm")
    fi
fi

echo
[ ${#failed_bins[@]} -eq 0 ] || echo "failing: ${failed_bins[*]}"
echo "tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
