#!/usr/bin/env bash
# make bench: runs every benchmark program and script; each prints its own table.
set -uo pipefail
build=${1:-build}
export SAMBENCH_BIN=$build/bin/sambench
status=0
for b in "$build"/bench/bench_*; do
    [ -x "$b" ] || continue
    echo "== $(basename "$b")"
    "$b" || status=1
    echo
done
for s in bench/bench_*.sh; do
    [ -f "$s" ] || continue
    echo "== $(basename "$s")"
    bash "$s" "$build" || status=1
    echo
done
exit $status
