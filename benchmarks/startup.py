"""Start-up: a no-op `snakemake -n` in a finished results folder against bare Snakemake on a one-rule Snakefile.

Both run `--runs` times, alternating, and the medians are compared. With `--no-slurm-wait` a `scontrol` that fails
at once goes first on PATH, as where no SLURM client is installed or a controller answers; without it, an
installed client with no controller makes both wait 10 s in the SLURM plugin's import (docs/cluster.md).

    bash scripts/run.sh && python benchmarks/startup.py --workdir . --runs 10 --no-slurm-wait

`--configfile` measures a run of another recipe (e.g. the fixture recipe, finished in minutes) instead of the default.
Our Snakefile ends in `gc.freeze()`, which also spares the interpreter's exit a scan of every object; a second
peer, the one-rule Snakefile ending in `gc.freeze()` too, shows what is left once both have that.
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
    rule = 'rule all:\n    output: "x"\n    shell: "touch {output}"\n'
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ)
        peers = {"bare Snakemake": rule, "bare Snakemake + gc.freeze()": f"import gc\n\n{rule}\ngc.freeze()\n"}
        folders = {}
        for i, (name, snakefile) in enumerate(peers.items()):
            folders[name] = Path(tmp) / f"bare{i}"
            folders[name].mkdir()
            (folders[name] / "Snakefile").write_text(snakefile)
            (folders[name] / "x").touch()
        if a.no_slurm_wait:
            stub = Path(tmp) / "bin"
            stub.mkdir()
            (stub / "scontrol").write_text("#!/bin/sh\nexit 1\n")
            (stub / "scontrol").chmod(0o755)
            env["PATH"] = f"{stub}{os.pathsep}{env['PATH']}"
        times: dict[str, list[float]] = {"ours": [], **{name: [] for name in peers}}
        recipe = ["--configfile", str(a.configfile)] if a.configfile else []
        for _ in range(a.runs):
            times["ours"].append(timed_noop(a.workdir, env, recipe))
            for name, folder in folders.items():
                times[name].append(timed_noop(folder, env, []))
    o = statistics.median(times["ours"])
    print(f"no-op {o:.3f} s (median of {a.runs})")
    for name in peers:
        b = statistics.median(times[name])
        print(f"  {name} {b:.3f} s: {o / b:.2f}x")


if __name__ == "__main__":
    main()
