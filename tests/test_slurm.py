"""The workflow on a real single-node SLURM, through `--profile profiles/slurm`.

Opt-in: set DR_SLURM_TEST=1 (CI does); unset, the tests skip. Set, they need root and SLURM or apt, and fail
(not skip) without them: tests/cluster/slurm_up.sh installs and starts munge, MariaDB, slurmdbd, slurmctld and
slurmd on loopback; the module fixture stops them again with tests/cluster/slurm_down.sh. Each workflow runs
twice, through SLURM and locally (`--profile profiles/local`), and the outputs must be byte-equal; SLURM
accounting (sacct) must list every job by rule.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import FIXTURE_RECIPE, NO_SLURM_PATH, copy_run

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "tests" / "cluster"
STATE = Path(os.environ.get("DR_SLURM_DIR", "/tmp/dr-slurm"))

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(os.environ.get("DR_SLURM_TEST") != "1", reason="set DR_SLURM_TEST=1"),
]


def _cannot_start_slurm() -> str | None:
    """Why SLURM cannot be started here, or None. With DR_SLURM_TEST=1 that is a failure, never a skip: a run
    that asked for the SLURM tests and passed without them would say nothing about SLURM."""
    if os.geteuid() != 0:
        return "starting SLURM needs root"
    if shutil.which("slurmctld") is None and shutil.which("apt-get") is None:
        return "no SLURM and no apt-get to install it"
    return None


# A 3-job workflow: a CPU job, a 2-GPU job (the node's stand-in GPUs) and a CPU job after it.
# `square` records each launch of its command, so a GPU job that ran twice would show.
TINY_SNAKEFILE = """\
localrules:
    all,


rule all:
    input:
        "results/total.txt",


rule numbers:
    output:
        "data/numbers.txt",
    threads: 1
    resources:
        mem_mb=200,
        runtime=5,
        gpu=0,
    shell:
        "seq 1 50 > {output}"


rule square:
    input:
        "data/numbers.txt",
    output:
        "data/squares.txt",
    log:
        "logs/square.log",
    threads: 1
    resources:
        mem_mb=200,
        runtime=5,
        gpu=2,
    shell:
        "echo launched gpus=${{CUDA_VISIBLE_DEVICES:-none}} >> {log}; "
        "awk '{{print $1 * $1}}' {input} > {output}"


rule total:
    input:
        "data/squares.txt",
    output:
        "results/total.txt",
    threads: 1
    resources:
        mem_mb=200,
        runtime=5,
        gpu=0,
    shell:
        "awk '{{s += $1}} END {{print s}}' {input} > {output}"
"""


def _run(cmd: list[str], timeout_s: int, cwd: Path = REPO) -> float:
    """Run `cmd` under `timeout -k` (a stuck Snakemake ignores SIGTERM); return seconds taken."""
    start = time.monotonic()
    proc = subprocess.run(
        ["timeout", "-k", "10", str(timeout_s), *cmd],
        cwd=cwd,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    elapsed = time.monotonic() - start
    assert proc.returncode == 0, (
        f"{' '.join(cmd)} exited {proc.returncode} after {elapsed:.0f}s\n"
        f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-8000:]}"
    )
    return elapsed


def _slurm_running() -> bool:
    pid_file = STATE / "slurmctld.pid"
    if not pid_file.is_file():
        return False
    try:
        os.kill(int(pid_file.read_text()), 0)
    except (ValueError, ProcessLookupError):
        return False
    return True


@pytest.fixture(scope="module")
def slurm() -> Iterator[None]:
    """A running single-node SLURM, with the real `scontrol` on PATH (conftest puts a stand-in first);
    stopped afterwards unless it was already up. Fails (DR_SLURM_TEST=1 asked for SLURM) where it cannot start."""
    reason = _cannot_start_slurm()
    if reason is not None:
        pytest.fail(f"DR_SLURM_TEST=1 but {reason}")
    was_up = _slurm_running()
    path = os.environ["PATH"]
    stub = os.environ.get(NO_SLURM_PATH)
    os.environ["PATH"] = os.pathsep.join(p for p in path.split(os.pathsep) if p != stub)
    try:
        took = _run(["bash", str(CLUSTER / "slurm_up.sh")], timeout_s=600)
        print(f"slurm_up.sh: {took:.1f}s")
        yield
    finally:
        if not was_up:
            took = _run(["bash", str(CLUSTER / "slurm_down.sh")], timeout_s=60)
            print(f"slurm_down.sh: {took:.1f}s")
        os.environ["PATH"] = path


def _snakemake_slurm(base: list[str], workdir: Path, prefix: str, timeout_s: int) -> float:
    """Run the workflow through profiles/slurm; jobs are named `<prefix>_<run uuid>`."""
    return _run(
        [
            *base,
            "--directory",
            str(workdir),
            "--profile",
            str(REPO / "profiles" / "slurm"),
            # The default first status check waits 40 s; jobs here take seconds.
            "--slurm-init-seconds-before-status-checks",
            "2",
            "--slurm-jobname-prefix",
            prefix,
        ],
        timeout_s=timeout_s,
    )


def _snakemake_local(base: list[str], workdir: Path, timeout_s: int) -> float:
    return _run(
        [*base, "--directory", str(workdir), "--profile", str(REPO / "profiles" / "local")],
        timeout_s=timeout_s,
    )


def _accounted_jobs(prefix: str) -> list[dict[str, str]]:
    """Jobs in SLURM accounting whose name starts with `prefix`, as sacct field dicts."""
    fields = ["JobID", "JobName", "Comment", "State", "AllocTRES"]
    out = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-S", "now-1days", "-o", ",".join(fields)],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    rows = [dict(zip(fields, line.split("|"))) for line in out.splitlines() if line]
    return [row for row in rows if row["JobName"].startswith(f"{prefix}_")]


def _assert_same_files(
    local: Path, cluster: Path, patterns: tuple[str, ...], whole_reference: bool = True
) -> list[str]:
    """The files matching `patterns` exist in both trees and are byte-equal; return them. With whole_reference
    False, `local` may hold more (a run of the whole DAG against the cluster's run of one target)."""

    def found(root: Path) -> set[str]:
        return {str(p.relative_to(root)) for pat in patterns for p in root.glob(pat)}

    if whole_reference:
        names = found(local)
        assert names == found(cluster), (names, found(cluster))
    else:
        names = found(cluster)
        assert names <= found(local), names - found(local)
    assert names, f"no file matching {patterns}"
    for name in sorted(names):
        assert (local / name).read_bytes() == (cluster / name).read_bytes(), name
    return sorted(names)


def test_tiny_workflow_on_slurm(slurm: None, tmp_path: Path) -> None:
    snakefile = tmp_path / "Snakefile"
    snakefile.write_text(TINY_SNAKEFILE)
    base = ["snakemake", "-s", str(snakefile)]
    prefix = f"drtiny{os.getpid()}"

    on_slurm = _snakemake_slurm(base, tmp_path / "slurm", prefix, timeout_s=300)
    on_local = _snakemake_local(base, tmp_path / "local", timeout_s=120)
    print(f"tiny workflow: slurm {on_slurm:.1f}s, local {on_local:.1f}s")

    jobs = _accounted_jobs(prefix)
    by_rule = {row["Comment"]: row for row in jobs}
    assert set(by_rule) == {"rule_numbers", "rule_square", "rule_total"}, jobs
    assert all(row["State"] == "COMPLETED" for row in jobs), jobs
    # `gpu=2` reached sbatch as --gpus=2 (and `gpu=0` asked for none) ...
    assert "gres/gpu=2" in by_rule["rule_square"]["AllocTRES"], by_rule["rule_square"]
    assert "gres/gpu" not in by_rule["rule_numbers"]["AllocTRES"], by_rule["rule_numbers"]
    # ... as one task: plugin releases before 2.7.1 added --ntasks-per-gpu=1, one task (and
    # its CPUs, cpu=2 here) per GPU, and older job steps ran the command in every task ...
    assert "cpu=1," in by_rule["rule_square"]["AllocTRES"], by_rule["rule_square"]
    # ... and the 2-GPU job ran its command once, on both GPUs.
    launches = (tmp_path / "slurm" / "logs" / "square.log").read_text().splitlines()
    assert launches == ["launched gpus=0,1"]

    _assert_same_files(tmp_path / "local", tmp_path / "slurm", ("data/*.txt", "results/*.txt"))


def test_fixture_pipeline_on_slurm(slurm: None, fixture_run: Path, tmp_path: Path) -> None:
    # Round 1 again, as SLURM jobs, in a copy of the session's fixture run without round 1's model and files:
    # training, sharded encoding, indexing, retrieval and evaluation (GPU-sized and CPU-sized jobs) from the
    # copy's data, BM25 run and negatives. Seeded and deterministic on CPU: its files must equal the fixture run's.
    work = copy_run(fixture_run, tmp_path / "slurm")
    round1 = work / "results" / "tiny" / "round1"
    shutil.rmtree(round1 / "model")
    shutil.rmtree(round1 / "tiny")
    (round1 / "train_log.csv").unlink()
    target = "results/tiny/round1/tiny/metrics.test.json"
    base = ["snakemake", "-s", str(work / "Snakefile"), target, "--configfile", FIXTURE_RECIPE]  # the copy's own
    prefix = f"drfixture{os.getpid()}"

    on_slurm = _snakemake_slurm(base, work, prefix, timeout_s=1800)
    print(f"fixture pipeline: slurm {on_slurm:.1f}s")

    jobs = _accounted_jobs(prefix)
    assert all(row["State"] == "COMPLETED" for row in jobs), jobs
    ran = {row["Comment"].split("_wildcards_")[0] for row in jobs}  # rule_<name>[_wildcards_<values>]
    assert ran == {f"rule_{r}" for r in ("train", "encode", "index", "retrieve", "evaluate")}, ran
    round1_files = ("model/model.safetensors", "tiny/*.trec", "tiny/metrics.test.json")
    compared = _assert_same_files(
        fixture_run, work, tuple(f"results/tiny/round1/{f}" for f in round1_files), whole_reference=False
    )
    assert any(name.endswith("round1/tiny/metrics.test.json") for name in compared), compared
