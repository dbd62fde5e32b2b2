#!/usr/bin/env bash
# make demo: the main job on generated miniature data.
#  1. `sambench synth` writes a miniature MedBank-100k (21 tasks, 7 modalities) and the external sets;
#  2. `mpirun -np 2 sambench run` evaluates the weight-free `box` baseline (the jittered prompt box,
#     filled) over two MPI ranks with journals, results.h5 and the tables;
#  3. the per-task and per-modality tables are printed; `sambench report` re-renders them.
set -euo pipefail
bin=${1:-build/bin/sambench}
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
work=${DEMO_DIR:-$(mktemp -d /tmp/sambench-demo.XXXXXX)}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export SAMBENCH_THREADS=${SAMBENCH_THREADS:-1} OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}

"$bin" --version | head -n 1
echo
echo "== 1. miniature datasets: sambench synth --out $work/data --scale tiny"
"$bin" synth --out "$work/data" --scale tiny
echo
echo "== 2. mpirun -np 2 sambench run --model box --medbank $work/data/MedBank --out $work/box"
mpirun -np 2 --bind-to none "$bin" run --model box --medbank "$work/data/MedBank" --out "$work/box" \
    --progress 5 >"$work/box.tables.md"
echo
echo "== 3. the tables (also in $work/box/summary.{md,csv,tex,json} and per_case.csv)"
cat "$work/box.tables.md"
echo
echo "The 'box' baseline has no weights: its Dice is what a filled prompt box scores (a lower bound);"
echo "published Dice columns show n/a because no paper model ran."
echo
fx=$(cd "$(dirname "$0")/../tests/fixtures" && pwd)
echo "== 4. a tiny SAMed-2 with RANDOM weights (the fixture checkpoint PyTorch wrote, its config and"
echo "   6-entry memory bank), 2 ranks:"
echo "   mpirun -np 2 sambench run --model samed2 --model-config samed2_tiny_config.json \\"
echo "       --checkpoint samed2_tiny.pth --memory-bank memory_bank_list_6.pkl ..."
if mpirun -np 2 --bind-to none "$bin" run --model samed2 --model-config "$fx/samed2_tiny_config.json" \
    --checkpoint "$fx/samed2_tiny.pth" --memory-bank "$fx/memory_bank_list_6.pkl" --medbank "$work/data/MedBank" --out "$work/samed2-random" \
    --progress 5 >"$work/samed2.tables.md" 2>"$work/samed2.err"; then
    sed -n '/## Per modality/,$p' "$work/samed2.tables.md"
    echo
    echo "RANDOM WEIGHTS: these Dice values are meaningless; they only show the SAMed-2 flow (memory"
    echo "bank per volume, batches, journals, tables) running end to end over MPI ranks."
else
    echo "tiny SAMed-2 run failed:"; sed 's/^/  /' "$work/samed2.err"
fi
cat <<EOT

With the real checkpoints and MedBank-100k (random weights would give meaningless Dice):
  mpirun -np 8 $bin run --model samed2 --checkpoint /path/to/samed2.pth \\
      --memory-bank /path/to/memory_bank_list_640.pkl --medbank /path/to/MedBank --out results-samed2
  srun (Slurm): see slurm/sambench_run.sbatch;  tables again: $bin report results-samed2
  release gate:  $bin compare results-previous results-samed2 --max-drop 0.01

demo files kept in $work
EOT
