"""A sweep in the workflow (dry runs): the steps that read no varied key are planned once, the variants' steps once
per variant, and a variant added to a finished sweep plans only its own steps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import REPO
from test_workflow import FIXTURE_CONFIG, planned_jobs, snakemake

GRID = {"train.lr": [1.0e-4, 2.0e-4], "train.group_size": [3, 2]}  # the fixture's lr 1e-4, group 3: the base
SHARED = {"prepare": 1, "tokenize": 2, "bm25": 2, "init_model": 1, "first_negatives": 1, "qrels": 3}
VARIANTS = ["lr=0.0001,group_size=3", "lr=0.0001,group_size=2", "lr=0.0002,group_size=3", "lr=0.0002,group_size=2"]


def sweep_config(tmp_path: Path, **sweep) -> Path:
    config = yaml.safe_load(FIXTURE_CONFIG.read_text())
    config["data"]["dev"] = {"share": 0.25, "seed": 0}
    config["sweep"] = sweep
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def dry_run(config: Path, work: Path, check: bool = True):
    return snakemake("-n", "--configfile", str(config), "--directory", str(work), check=check)


def test_two_by_two_grid_plans_shared_steps_once_and_variant_steps_four_times(tmp_path):
    jobs = planned_jobs(dry_run(sweep_config(tmp_path, grid=GRID), tmp_path / "run").stdout)
    assert {rule: jobs[rule] for rule in SHARED} == SHARED
    assert jobs["train"] == 2 * 4 and jobs["mine"] == 4  # two rounds a variant
    assert jobs["select_round"] == 4 and jobs["summary"] == 4 and jobs["sweep_table"] == 1


def test_a_mining_only_sweep_shares_round_one(tmp_path):
    config = sweep_config(tmp_path, variants={"n4": {"negatives": {"mine": {"n": 4}}}})
    jobs = planned_jobs(dry_run(config, tmp_path / "run").stdout)
    assert jobs["train"] == 1 + 2  # round 1 once, round 2 per variant (base, n4)
    assert jobs["first_negatives"] == 1 and jobs["mine"] == 2


def test_merged_and_hybrid_systems_are_per_variant_where_they_differ(tmp_path):
    config = yaml.safe_load(sweep_config(tmp_path).read_text())
    config["merge"] = {"rounds": ["selected", 1]}
    config["hybrid"] = {"rounds": [0, 1, "selected", "wise-selected"], "depth": 20}
    config["sweep"] = {"variants": {"lr2": {"train": {"lr": 2.0e-4}}, "n4": {"negatives": {"mine": {"n": 4}}}}}
    path = tmp_path / "hybrid.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    proc = dry_run(path, tmp_path / "run")
    jobs = planned_jobs(proc.stdout)
    # base: wise-selected, wise-round1; lr2: both; n4: wise-selected only (its round 1 is the base's)
    assert jobs["merge_model"] == 2 + 2 + 1
    # base: bm25+ round0, round1, selected, wise-selected; lr2: all but round0's; n4: selected's two only
    assert jobs["fuse"] == 4 + 3 + 2 and jobs["fusion_weight"] == 4 + 3 + 2
    files = planned_files(proc.stdout)
    assert "results/tiny/bm25+round0/tiny/run.test.trec" in files
    assert not any(
        f.startswith(("results/tiny/variants/n4/wise-round1", "results/tiny/variants/n4/bm25+round1")) for f in files
    )


def planned_files(output: str) -> set[str]:
    """Every file a dry run plans to write: each job's outputs and the missing ones its reason names (logs aside,
    benchmarks included)."""
    files = set()
    for line in output.splitlines():
        line = line.strip()
        for head in ("output:", "reason: Missing output files:"):
            if line.startswith(head):
                listed = line.removeprefix(head).split(";")[0]
                files |= {f.strip() for f in listed.split(", ") if f.strip()}
    return files


def finished(config: Path, work: Path, variants: list[str]) -> None:
    """A sweep as if run: every file it plans made empty (folders for names without a suffix), each variant's
    choice of round 2 written first (the checkpoint's content the DAG reads), then touched in the DAG's order."""
    for name in variants:
        folder = work / "results" / "tiny" / ("" if name == variants[0] else f"variants/{name}") / "selected"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "choice.json").write_text(json.dumps({"round": 2, "metric": "ndcg@10", "dev": [0.1, 0.2, 0.3]}))
    for _ in range(3):  # the checkpoints add jobs once their outputs exist
        for name in planned_files(dry_run(config, work).stdout):
            path = work / name
            if "." in path.name:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.touch()
            else:
                path.mkdir(parents=True, exist_ok=True)
    snakemake("--touch", "--cores", "1", "--configfile", str(config), "--directory", str(work))
    assert "Nothing to be done" in dry_run(config, work).stdout


def test_adding_a_variant_plans_only_its_steps(tmp_path):
    work = tmp_path / "run"
    finished(sweep_config(tmp_path, grid=GRID), work, VARIANTS)
    added = sweep_config(tmp_path, grid=GRID, variants={"lr3": {"train": {"lr": 3.0e-4}}})
    proc = dry_run(added, work)
    jobs = planned_jobs(proc.stdout)
    comparison = {"results/tiny/sweep.tsv", "results/tiny/report/sweep.html", "results/tiny/report/sweep_dev.png"}
    planned = planned_files(proc.stdout) - comparison
    assert planned and all("/variants/lr3/" in f for f in planned)  # its folder, and its benchmarks' folder
    assert jobs["train"] == 2 and jobs["mine"] == 1 and jobs["select_round"] == 1 and jobs["summary"] == 1
    assert not set(SHARED) & set(jobs)
    assert jobs["sweep_table"] == 1  # the comparison gains a row


@pytest.mark.parametrize(
    ("sweep", "words"),
    [
        ({"variants": {"v1": {"train": {"lrr": 1.0e-5}}}}, ["'v1'", "train.lrr"]),
        ({"variants": {"v1": {"train": {"lr": "fast"}}}}, ["'v1'", "train.lr"]),
        ({"grid": {"train.lrr": [1.0e-5]}}, ["train.lrr"]),
        ({"variants": {"base": {"train": {"lr": 1.0e-5}}}}, ["'base'"]),
        ({"variants": {"ood": {"data": {"eval": []}}}}, ["'ood'", "data.eval", "not comparable"]),
    ],
)
def test_a_bad_sweep_is_refused_and_nothing_is_written(tmp_path, sweep, words):
    work = tmp_path / "run"
    proc = dry_run(sweep_config(tmp_path, **sweep), work, check=False)
    assert proc.returncode != 0
    for word in words:
        assert word in proc.stdout + proc.stderr
    assert not (work / "results").exists()


def test_a_sweep_needs_a_dev_split(tmp_path):
    config = yaml.safe_load(FIXTURE_CONFIG.read_text())
    config["sweep"] = {"grid": {"train.lr": [2.0e-4]}}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    proc = dry_run(path, tmp_path / "run", check=False)
    assert proc.returncode != 0 and "data.dev" in proc.stdout + proc.stderr


def test_the_schema_documents_the_sweep_section():
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    assert {"grid", "variants"} <= set(schema["properties"]["sweep"]["properties"])
