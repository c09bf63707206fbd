"""The results layout (dr_core.layout): its paths, the rules' patterns, and the workflow and the library agreeing
on where a round's files are."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import REPO, snakemake_cmd

from dr_core import layout, tryout
from dr_core.model import ENCODER_FILE


def test_layout_paths_with_values_and_as_wildcard_patterns():
    assert layout.qrels("scifact", "train") == "data/scifact/qrels.train.parquet"
    assert layout.qrels() == "data/{dataset}/qrels.{split}.parquet"
    assert layout.tokens("scifact", "queries") == "data/scifact/tokens.queries.parquet"
    assert layout.round_model(2) == "round2/model"
    assert layout.round_model() == "round{round}/model"
    assert layout.model("wise-{which}") == "wise-{which}/model"
    assert layout.train_negatives(3, denoised=True) == "round3/train_negatives.denoised.tsv"
    assert layout.emb_shard("round1", "nfcorpus", 0) == "round1/nfcorpus/emb/shard0.npy"
    assert layout.emb_ids() == "{dense}/{dataset}/emb/shard{shard}.ids.txt"
    assert layout.index("selected", "x") == "selected/x/index.faiss"
    assert layout.run("bm25+{ranker}") == "bm25+{ranker}/{dataset}/run.{split}.trec"
    assert layout.metrics("round0", "scifact", "test") == "round0/scifact/metrics.test.json"
    assert layout.fusion_weight("round1") == "bm25+round1/fusion.json"
    assert layout.log("bm25", "{dataset}.{split}") == "logs/bm25/{dataset}.{split}.log"
    assert layout.log("summary") == "logs/summary.log"
    assert layout.benchmark("train", "round1") == "benchmarks/train/round1.tsv"
    assert layout.round_of("round12") == 12 and layout.round_of("bm25+round1") is None


def test_no_rule_file_writes_a_results_path_by_hand():
    """Rules name results files through dr_core.layout (paths.smk's `out`), never as `{OUT}/...` literals."""
    rules = REPO / "workflow" / "rules"
    literals = {f.name: f.read_text().count("{OUT}") for f in rules.glob("*.smk") if f.name != "paths.smk"}
    assert not {name: n for name, n in literals.items() if n}, literals


@pytest.fixture(scope="module")
def planned_outputs(tmp_path_factory) -> tuple[Path, list[str]]:
    """The outputs of every job of a dry run of the fixture recipe with a hybrid system, relative to the run
    folder."""
    work = tmp_path_factory.mktemp("layout")
    config = yaml.safe_load((REPO / "tests" / "fixtures" / "workflow_config.yaml").read_text())
    config["hybrid"] = {"rounds": [1], "depth": 20}
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    cmd = snakemake_cmd("-n", "-p", "--configfile", str(work / "config.yaml"), "--directory", str(work))
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, check=True)
    run_dir = work / "results" / "tiny"
    prefix = "results/tiny/"
    outputs = [
        path.removeprefix(prefix)
        for line in re.findall(r"^\s+output: (.*)$", proc.stdout, re.M)
        for path in line.split(", ")
    ]
    return run_dir, outputs


def test_the_rules_write_the_files_the_layout_names(planned_outputs):
    _, outputs = planned_outputs
    for path in (
        layout.qrels("tiny", "train"),
        layout.tokens("tiny", "queries"),
        layout.round_model(0),
        layout.round_model(2),
        layout.train_negatives(2),
        layout.emb_shard("round1", "tiny", 1),
        layout.emb_ids("round1", "tiny", 1),
        layout.index("round2", "tiny"),
        layout.index_meta("round2", "tiny"),
        layout.run("bm25+round1", "tiny", "test"),
        layout.metrics("round2", "tiny", "test"),
        layout.fusion_weight("round1"),
        layout.model_card(2),
        layout.summary(),
    ):
        assert path in outputs, path


def test_tryout_finds_a_round_where_the_workflow_writes_it(planned_outputs):
    """A run folder with (empty stand-ins for) the files the workflow plans: tryout lists its rounds with a
    model and the datasets they embed, and finds the corpus and the tuned fusion weight."""
    run_dir, outputs = planned_outputs
    for path in outputs:
        target = run_dir / path
        if target.name == "model":
            target.mkdir(parents=True, exist_ok=True)
            (target / ENCODER_FILE).write_text("{}")
        elif target.suffix:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text('{"weight": 0.25}' if target.name == "fusion.json" else "")
    assert tryout.model_rounds(run_dir) == [0, 1, 2]
    assert tryout.run_folders(run_dir.parent) == ["tiny"]
    assert tryout.embedded_datasets(run_dir / layout.round_name(1)) == ["tiny"]
    tryout.check_round(run_dir, 2, "tiny")  # no MissingPathError
    assert tryout.check_corpus(run_dir, "tiny") == run_dir / layout.corpus("tiny")
    assert tryout.fusion_weight(run_dir, 1, None) == 0.25
