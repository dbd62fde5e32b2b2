#!/bin/bash
# Submits the evaluation and the report chained with --dependency=afterok:
#   MODEL=samed2 CHECKPOINT=... MEMORY_BANK=... MEDBANK=/data/MedBank OUT=/scratch/r bash slurm/submit.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
jid=$(sbatch --parsable "$here/sambench_run.sbatch")
rid=$(RESULTS="${OUT:?set OUT}" sbatch --parsable --dependency=afterok:"$jid" "$here/sambench_report.sbatch")
echo "evaluation job $jid, report job $rid (runs after $jid succeeds)"
