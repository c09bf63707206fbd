#!/usr/bin/env bash
# The test suite (unit tests, the workflow end to end on the fixture, real-data checks when ../shared exists).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec python -m pytest -q tests "$@"
