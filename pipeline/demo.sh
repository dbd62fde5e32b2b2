#!/usr/bin/env bash
# make demo: the main job on built-in demo data (grows with the pipeline).
set -euo pipefail
bin=${1:-build/bin/sambench}
"$bin" --version
echo
"$bin" help
