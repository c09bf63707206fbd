"""Hybrid systems in the workflow: a `bm25+round1` system on the fixture run, hybrid mining, and bad settings."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from conftest import copy_run, snakemake_in
from test_workflow import planned_jobs, snakemake, write_config

HYBRID = {"rounds": [1], "depth": 20}  # the fixture's train runs are 20 deep


@pytest.mark.slow
def test_hybrid_system_is_tuned_on_train_fused_and_evaluated(fixture_run, tmp_path):
    work = copy_run(fixture_run, tmp_path)  # the 2-round fixture run, reused: only fusion is new
    config = write_config(tmp_path, hybrid=HYBRID)
    jobs = planned_jobs(snakemake_in(work, "-n", config=config).stdout)
    assert jobs == {
        "fusion_weight": 1, "fuse": 1, "evaluate": 1, "summary": 1, "report_table": 1, "report_metrics": 1, "all": 1,
        "model_card": 3,  # the cards' reproducing command names the config file, another one here
    }  # fmt: skip
    snakemake_in(work, "--cores", "2", config=config)

    out = work / "results" / "tiny"
    summary = pd.read_csv(out / "summary.tsv", sep="\t")
    assert summary["system"].tolist() == ["bm25", "round0", "round1", "round2", "bm25+round1"]
    tuned = json.loads((out / "bm25+round1" / "fusion.json").read_text())
    assert len(tuned["grid"]) == 21 and tuned["queries"] == 16  # the 16 train queries, none of the 8 test ones
    best = max(g["ndcg@10"] for g in tuned["grid"])
    assert tuned["weight"] == min(g["weight"] for g in tuned["grid"] if g["ndcg@10"] == best)
    log = (out / "logs" / "fuse" / "bm25+round1.weight.log").read_text()
    assert "on 16 queries" in log
    fused = pd.read_csv(out / "bm25+round1" / "tiny" / "run.test.trec", sep=" ", header=None)
    assert (
        fused[0].nunique() == 8 and fused.groupby(0).size().between(20, 40).all() and set(fused[5]) == {"bm25+round1"}
    )
    metrics = json.loads((out / "bm25+round1" / "tiny" / "metrics.test.json").read_text())
    assert metrics["system"] == "bm25+round1" and 0 < metrics["metrics"]["ndcg@10"] <= 1
    assert (out / "report" / "summary.html").read_text().count("bm25+round1") >= 1


def test_hybrid_mining_and_a_dev_tune_split_wire_the_right_runs(tmp_path):
    config = write_config(
        tmp_path,
        hybrid={**HYBRID, "method": "convex", "tune_split": "dev"},
        **{
            "negatives.mine": {
                "depth": 20,
                "rank_min": 2,
                "rank_max": 20,
                "n": 8,
                "from": "hybrid",
                "bm25_fraction": 0.25,
            }
        },
    )
    proc = snakemake("-n", "-p", "--configfile", str(config), "--directory", str(tmp_path))
    commands = [line for line in proc.stdout.splitlines() if "python -m dr_core" in line]
    (tune,) = [c for c in commands if "fusion-weight" in c]
    assert "bm25/tiny/run.dev.trec" in tune and "round1/tiny/run.dev.trec" in tune and "qrels.dev.parquet" in tune
    (mine,) = [c for c in commands if " mine " in c and "round2/train_negatives" in c]
    assert "--run results/tiny/bm25+round1/tiny/run.train.trec" in mine
    assert "--bm25-run results/tiny/bm25/tiny/run.train.trec" in mine and "--bm25-fraction=0.25" in mine
    (fuse_train,) = [c for c in commands if "--out results/tiny/bm25+round1/tiny/run.train.trec" in c]
    assert "--weight-file results/tiny/bm25+round1/fusion.json" in fuse_train


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"hybrid": {**HYBRID, "weight": 1.5}}, "On instance['hybrid']['weight']"),
        ({"negatives.mine.bm25_fraction": -0.2}, "On instance['negatives']['mine']['bm25_fraction']"),
        ({"hybrid": {"rounds": [3], "depth": 20}}, "config: hybrid.rounds has ['round3'] past ance.rounds (2)"),
        ({"hybrid": {"rounds": [1]}}, "config: hybrid.depth (100) exceeds eval.depth (48)"),
        ({"hybrid": {**HYBRID, "tune_split": "test"}}, "config: hybrid.tune_split 'test' is an evaluation split"),
    ],
    ids=["weight", "bm25_fraction", "round", "depth", "tune-on-test"],
)
def test_bad_hybrid_settings_are_refused_by_key_before_any_output(tmp_path, changes, message):
    config = write_config(tmp_path, **changes)
    proc = snakemake("--cores", "1", "--configfile", str(config), "--directory", str(tmp_path), check=False)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()
