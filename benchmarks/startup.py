"""Start-up: a no-op `snakemake -n` in a finished results folder against bare Snakemake on a one-rule Snakefile.

Both run `--runs` times, alternating, and the medians are compared. With `--no-slurm-wait` a `scontrol` that fails
at once goes first on PATH, as where no SLURM client is installed or a controller answers; without it, an
installed client with no controller makes both wait 10 s in the SLURM plugin's import (docs/cluster.md).

    bash scripts/run.sh && python benchmarks/startup.py --workdir . --runs 10 --no-slurm-wait

`--configfile` measures a run of another recipe (e.g. the fixture recipe, finished in minutes) instead of the default.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path


def timed_noop(cwd: Path, env: dict[str, str], args: list[str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(["snakemake", "-n", *args], cwd=cwd, env=env, capture_output=True, text=True)
    took = time.perf_counter() - t0
    if proc.returncode != 0 or "Nothing to be done" not in proc.stdout + proc.stderr:
        raise SystemExit(f"{cwd}: `snakemake -n` is not a no-op there:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return took


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", type=Path, default=Path("."), help="the repository with a finished default run")
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--configfile", type=Path, help="the recipe the finished run used, when not the default")
    p.add_argument("--no-slurm-wait", action="store_true", help="a stand-in `scontrol` first on PATH")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bare, env = Path(tmp) / "bare", dict(os.environ)
        bare.mkdir()
        (bare / "Snakefile").write_text('rule all:\n    output: "x"\n    shell: "touch {output}"\n')
        (bare / "x").touch()
        if a.no_slurm_wait:
            stub = Path(tmp) / "bin"
            stub.mkdir()
            (stub / "scontrol").write_text("#!/bin/sh\nexit 1\n")
            (stub / "scontrol").chmod(0o755)
            env["PATH"] = f"{stub}{os.pathsep}{env['PATH']}"
        ours, peer = [], []
        for _ in range(a.runs):
            ours.append(timed_noop(a.workdir, env, ["--configfile", str(a.configfile)] if a.configfile else []))
            peer.append(timed_noop(bare, env, []))
    o, b = statistics.median(ours), statistics.median(peer)
    print(f"no-op {o:.3f} s, bare Snakemake {b:.3f} s: {o / b:.2f}x (medians of {a.runs})")


if __name__ == "__main__":
    main()
