#!/usr/bin/env bash
# The tests: set up (idempotent), then unit tests, the workflow end to end on the fixture, real-data checks
# when ../shared exists. SLURM tests run when DR_SLURM_TEST=1 (as root); the report test needs chromium. With
# DR_SLURM_TEST=1 a missing SLURM, root or Chromium fails the run instead of skipping; -rs prints every skip's reason.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# Two workers (DR_TEST_WORKERS): the slow tests spend much of their time starting processes and waiting on them,
# so two fill 2 cores. --dist loadfile keeps each module on one worker (SLURM's cluster, the dev-choice sweep's
# run); the fixture run is built once for both (conftest.fixture_run). (loadgroup's xdist_group marks do nothing
# under pytest 9.2 with pytest-xdist 3.8.0: it renames items through an attribute pytest no longer reads.)
exec python -m pytest -q -rs -n "${DR_TEST_WORKERS:-2}" --dist loadfile tests "$@"
