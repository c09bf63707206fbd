#!/usr/bin/env bash
# Set-up on a fresh machine, idempotent (a second run costs seconds).
# Installs into the active virtual or conda environment if there is one; otherwise into the project's own
# virtual environment, created with python3 ($DR_VENV, default .venv/), so that a stock Linux whose system
# python3 is marked externally managed (PEP 668) and which has no `python` works. Installs the CPU build of
# torch (pinned: an unpinned torch pulls a multi-GB CUDA build), then dr_core with the workflow, model and test
# extras. DR_PYTHON=/path/to/python3 builds the environment from that interpreter. Source scripts/env.sh afterwards to use the environment.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
if [ -z "${VIRTUAL_ENV:-}${CONDA_PREFIX:-}" ]; then
  py="${DR_PYTHON:-python3}"  # DR_PYTHON picks the interpreter (CI: the system's own /usr/bin/python3)
  command -v "$py" >/dev/null || { echo "setup: $py (3.10+) is needed and was not found" >&2; exit 1; }
  if ! "$py" -m venv "$DR_VENV"; then
    echo "setup: '$py -m venv $DR_VENV' failed; on Debian/Ubuntu install the venv module: apt install python3-venv" >&2
    exit 1
  fi
  source scripts/env.sh
fi
stamp="$(python -c 'import sys; print(sys.prefix)')/.dr_core_setup"
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && python -c "import dr_core, snakemake, torch" 2>/dev/null; then
  exit 0  # installed from this pyproject.toml already
fi
python -m pip install --quiet --upgrade pip
python -m pip install --quiet "torch==2.13.0"
python -m pip install --quiet -e ".[workflow,models,dev]"
echo "$want" >"$stamp"
