#!/usr/bin/env bash
# Throughput (slices/s) of the `sambench run` pipeline with the `box` baseline at 1 and 2 ranks,
# and, for the machine's own capacity, 2 independent single-rank processes of the same work
# started side by side (this machine sustains about one core: see the README's scaling notes).
# The box baseline has no inference, so these figures are the pipeline's own cost per slice:
# PNG decoding, the bit-exact resize of the mask to 1024 x 1024, the box, the bilinear resize of
# the 1024 x 1024 logits to the native grid, metrics (counts, surfaces, NSD), journaling, merge
# and reduction. Usage: bench/bench_run.sh BUILD_DIR
set -uo pipefail
build=${1:-build}
bin=$build/bin/sambench
T=$(mktemp -d /tmp/sambench-bench-run.XXXXXX)
trap 'rm -rf "$T"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 SAMBENCH_THREADS=1 OPENBLAS_NUM_THREADS=1
"$bin" synth --out "$T/data" --scale small >/dev/null || { echo "bench_run: synth failed"; exit 1; }
slices=$(cat "$T"/data/MedBank/*/test.txt | grep -c .)
now() { date +%s.%N; }
rate() { awk -v n="$1" -v a="$2" -v b="$3" 'BEGIN{printf "%.1f", n/(b-a)}'; }

echo "data: sambench synth --scale small, MedBank part: $slices slices (192-256 px), model grid 1024"
echo
echo "| setting | wall s | slices/s |"
echo "|---|---:|---:|"
t0=$(now); "$bin" run --model box --medbank "$T/data/MedBank" --out "$T/r1" --progress 0 >/dev/null 2>&1; t1=$(now)
echo "| 1 rank (no launcher) | $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}') | $(rate "$slices" "$t0" "$t1") |"
t0=$(now); mpirun -np 1 --bind-to none "$bin" run --model box --medbank "$T/data/MedBank" --out "$T/m1" --progress 0 >/dev/null 2>&1; t1=$(now)
echo "| mpirun -np 1 | $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}') | $(rate "$slices" "$t0" "$t1") |"
t0=$(now); mpirun -np 2 --bind-to none "$bin" run --model box --medbank "$T/data/MedBank" --out "$T/m2" --progress 0 >/dev/null 2>&1; t1=$(now)
echo "| mpirun -np 2 | $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}') | $(rate "$slices" "$t0" "$t1") |"
t0=$(now)
"$bin" run --model box --medbank "$T/data/MedBank" --out "$T/p1" --progress 0 >/dev/null 2>&1 &
p1=$!
"$bin" run --model box --medbank "$T/data/MedBank" --out "$T/p2" --progress 0 >/dev/null 2>&1 &
p2=$!
wait $p1 $p2; t1=$(now)
echo "| 2 independent 1-rank processes side by side (2x the work) | $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}') | $(rate $((2 * slices)) "$t0" "$t1") |"
cmp -s "$T/r1/per_case.csv" "$T/m2/per_case.csv" && echo && echo "1-rank and 2-rank per_case.csv identical: yes" \
    || { echo "1-rank and 2-rank per_case.csv differ"; exit 1; }

# The share of wall time outside inference with a real-size model at 1024 x 1024: the medsam2
# flow (random weights of the official shapes) on two tasks of the generated data, one rank.
# `sambench run` measures it itself: model inference time against the ranks' wall time, which
# includes start-up, scheduling, I/O, pre-processing, metrics, journaling, merge and tables.
mkdir -p "$T/real"
for t in "$T"/data/MedBank/Polyp_Colonoscopy_* "$T"/data/MedBank/Lung_X-Ray_*; do cp -r "$t" "$T/real/"; done
echo
SAMBENCH_THREADS=1 "$bin" run --model medsam2 --medbank "$T/real" --out "$T/rr" --batch 1 --progress 0 2>&1 |
    grep "outside inference" | sed 's/^sambench run: /real-size medsam2, 1 rank: /'
echo "goal: under 5 % of the wall time outside inference for a real-size model"
