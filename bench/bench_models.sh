#!/usr/bin/env bash
# SAM2-S (sam2 flow, MODEL.md 1.3, ~364 GFLOP per image) and MedSAM2 = SAM2-T
# (medsam2 flow, 1.4, ~296 GFLOP) at 1024 x 1024 with deterministic random
# weights of the official shapes: `sambench bench-model` for batch 1 and 2 at
# 1 thread (the primary figure: this machine class gives about one sustained
# core) and at 2 threads. Each figure is printed beside its goal (issue 4):
# efficiency >= 0.85 of the SGEMM peak measured in the same process, peak RSS
# < 500 MiB at batch 1. The exit status reports failures to run, not missed goals.
#   bash bench/bench_models.sh [BUILD]        (REPS=1 by default)
set -uo pipefail
build=${1:-build}
bin=${SAMBENCH_BIN:-$build/bin/sambench}
reps=${REPS:-1}
if [ ! -x "$bin" ]; then echo "bench_models: $bin not built"; exit 1; fi

key() { # key NAME JSON -> the number after "NAME":
    sed -n "s/.*\"$1\"[[:space:]]*:[[:space:]]*\([-0-9.eE+]*\).*/\1/p" <<<"$2" | head -n 1
}

status=0
printf '%-8s %-5s %-7s %9s %9s %9s %9s %10s %6s %8s %9s %6s\n' flow batch threads s/image GFLOP/img \
    "GF/s" "peak GF/s" efficiency goal "cpu eff" "RSS MiB" goal
for flow in sam2 medsam2; do
    for threads in 1 2; do
        for batch in 1 2; do
            out=$(SAMBENCH_THREADS=$threads OPENBLAS_NUM_THREADS=$threads "$bin" bench-model --flow "$flow" \
                  --random-weights --batch "$batch" --reps "$reps" --threads "$threads" --format json 2>&1)
            rc=$?
            if [ $rc -ne 0 ]; then
                echo "bench-model --flow $flow --batch $batch --threads $threads failed ($rc):"
                echo "$out" | tail -n 5
                status=1
                continue
            fi
            spi=$(key seconds_per_image "$out"); gf=$(key gflop_per_image "$out")
            peak=$(key sgemm_peak_gflops "$out"); eff=$(key efficiency "$out"); rss=$(key peak_rss_mb "$out")
            ceff=$(key cpu_efficiency "$out")
            effok=$(awk -v e="$eff" 'BEGIN{print (e >= 0.85) ? "ok" : "MISS"}')
            rssok=$(awk -v r="$rss" -v b="$batch" 'BEGIN{print (b > 1) ? "-" : (r < 500 ? "ok" : "MISS")}')
            printf '%-8s %-5s %-7s %9.2f %9.1f %9.1f %9.1f %10.3f %6s %8.3f %9.0f %6s\n' "$flow" "$batch" \
                "$threads" "$spi" "$gf" "$(awk -v g="$gf" -v s="$spi" 'BEGIN{print g/s}')" "$peak" "$eff" "$effok" \
                "$ceff" "$rss" "$rssok"
        done
    done
done
echo "goals: efficiency >= 0.85 of the same-run square-SGEMM peak; peak RSS < 500 MiB at batch 1"
echo "cpu eff: the same ratio with process CPU seconds for both the model and the SGEMM (robust when the machine is shared)"
echo "reference (PyTorch 1.13 CPU fp32, 1 thread, SAM2-S batch 1): 5.4 s/image, 67 GFLOP/s, 55 % of 122 GFLOP/s, 1.5 GiB RSS"
exit $status
