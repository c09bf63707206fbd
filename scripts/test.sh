#!/usr/bin/env bash
# The tests: set up (idempotent), then unit tests, the workflow end to end on the fixture, real-data checks
# when ../shared exists. SLURM tests run when DR_SLURM_TEST=1 (as root); the report test needs chromium. With
# DR_SLURM_TEST=1 a missing SLURM, root or Chromium fails the run instead of skipping; -rs prints every skip's reason.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec python -m pytest -q -rs tests "$@"
