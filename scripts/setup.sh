#!/usr/bin/env bash
# Set-up on a fresh machine: the CPU build of torch (pinned: an unpinned torch pulls a multi-GB CUDA build),
# then dr_core with the workflow, model and test extras.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet --upgrade pip
python -m pip install --quiet "torch==2.13.0"
python -m pip install --quiet -e ".[workflow,models,dev]"
