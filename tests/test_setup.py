"""The README's set-up on a stock Linux: only the system python3 (PEP 668 marker, no `python`), no active venv."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from conftest import REPO

SYSTEM_PYTHON = Path("/usr/bin/python3")
STOCK_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def _stock_env(venv: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "CONDA_PREFIX", "PYTHONPATH"}}
    env.update(PATH=STOCK_PATH, DR_VENV=str(venv))
    return env


@pytest.mark.slow
def test_setup_creates_its_own_venv_with_only_system_python3(tmp_path):
    if not SYSTEM_PYTHON.exists():
        pytest.skip("no /usr/bin/python3 to play the stock system interpreter")
    stdlib = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import sysconfig; print(sysconfig.get_path('stdlib'))"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    if not (Path(stdlib) / "EXTERNALLY-MANAGED").exists():
        pytest.skip(f"{SYSTEM_PYTHON} carries no PEP 668 marker here")
    env = _stock_env(tmp_path / "venv")
    assert subprocess.run(["bash", "-c", "command -v python"], env=env, capture_output=True).returncode != 0
    # pip refuses the system interpreter on such a machine: this is what setup must avoid
    refused = subprocess.run([SYSTEM_PYTHON, "-m", "pip", "install", "six"], env=env, capture_output=True, text=True)
    assert refused.returncode != 0 and "externally-managed" in refused.stderr

    subprocess.run(["bash", str(REPO / "scripts" / "setup.sh")], env=env, check=True, timeout=1200)
    out = subprocess.run([tmp_path / "venv" / "bin" / "snakemake", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip()[0].isdigit()
    # the scripts' environment: `python` is the venv's, and dr_core imports there
    probe = subprocess.run(
        ["bash", "-c", f"source {REPO}/scripts/env.sh && command -v python && python -c 'import dr_core, torch'"],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip().splitlines()[0] == str(tmp_path / "venv" / "bin" / "python")
    # idempotent: a second run installs nothing
    again = subprocess.run(["bash", str(REPO / "scripts" / "setup.sh")], env=env, capture_output=True, text=True)
    assert again.returncode == 0 and again.stdout == ""
