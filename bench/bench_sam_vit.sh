#!/usr/bin/env bash
# SAM ViT-B (sam flow, MODEL.md 1.6) at full size with random weights:
# seconds per image, efficiency against the same-run SGEMM peak (about
# 976 GFLOP per image), peak RSS; batch 1 and 2 at 1 thread (primary) and
# 2 threads. Goals (issue 6): efficiency >= 0.85, peak RSS < 1024 MiB at
# batch 2.
#   bash bench/bench_sam_vit.sh [BUILD]        (REPS=1 by default)
set -uo pipefail
build=${1:-build}
bin=${SAMBENCH_BIN:-$build/bin/sambench}
reps=${REPS:-1}
cfg=configs/models/sam_vit_b.yaml
if [ ! -x "$bin" ]; then echo "bench_sam_vit: $bin not built"; exit 1; fi

key() { # key NAME JSON -> the number after "NAME":
    sed -n "s/.*\"$1\"[[:space:]]*:[[:space:]]*\([-0-9.eE+]*\).*/\1/p" <<<"$2" | head -n 1
}

status=0
printf '%-7s %-5s %-7s %12s %10s %12s %10s %6s %12s %6s\n' flow batch threads s/image GFLOP/img \
    "peak GF/s" efficiency goal "peak RSS MiB" goal
for threads in 1 2; do
    for batch in 1 2; do
        out=$(SAMBENCH_THREADS=$threads "$bin" bench-model --flow sam --model-config "$cfg" \
              --random-weights --batch "$batch" --reps "$reps" --threads "$threads" --format json 2>&1)
        rc=$?
        if [ $rc -ne 0 ]; then
            echo "bench-model --flow sam --batch $batch --threads $threads failed ($rc):"
            echo "$out" | tail -n 5
            status=1
            continue
        fi
        spi=$(key seconds_per_image "$out"); gf=$(key gflop_per_image "$out")
        peak=$(key sgemm_peak_gflops "$out"); eff=$(key efficiency "$out"); rss=$(key peak_rss_mb "$out")
        effok=$(awk -v e="$eff" 'BEGIN{print (e >= 0.85) ? "ok" : "MISS"}')
        rssok=$(awk -v r="$rss" -v b="$batch" 'BEGIN{print (b < 2 || r < 1024) ? "ok" : "MISS"}')
        printf '%-7s %-5s %-7s %12.2f %10.1f %12.1f %10.3f %6s %12.0f %6s\n' sam "$batch" "$threads" \
            "$spi" "$gf" "$peak" "$eff" "$effok" "$rss" "$rssok"
    done
done
echo "reference (PyTorch 1.13 CPU fp32, 1 thread, batch 1): 16.2 s/image, 60 GFLOP/s, 3.3 GiB (5.9 GiB at batch 2)"
exit $status
