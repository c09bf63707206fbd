# Sourced by the scripts: use the project's virtual environment ($DR_VENV, default .venv/) when no virtual or
# conda environment is active and it exists. Type `source scripts/env.sh` (or `source .venv/bin/activate`) to run
# snakemake by hand.
DR_VENV="${DR_VENV:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.venv}"
if [ -z "${VIRTUAL_ENV:-}${CONDA_PREFIX:-}" ] && [ -x "$DR_VENV/bin/python" ]; then
  # shellcheck disable=SC1091
  source "$DR_VENV/bin/activate"
fi
