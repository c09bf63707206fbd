#!/usr/bin/env bash
# The main job: set up, then run the default recipe end to end and print the metrics table.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
export TOKENIZERS_PARALLELISM=false
exec snakemake --cores "${CORES:-all}" "$@"
