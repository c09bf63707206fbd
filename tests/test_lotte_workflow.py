"""The source toolkits' own setups in the DAG (issue 13): Disentangled Retriever's recipes dry-run from download to
LoTTE evaluation; BM25 is scored with Success@5 on the LoTTE fixture; COCO-DR encodes passages without titles."""

from __future__ import annotations

import json

import yaml
from conftest import REPO
from test_workflow import FIXTURE_CONFIG, planned_jobs, snakemake

RECIPES = ("disentangled", "disentangled-distill")


def test_disentangled_recipes_fetch_hard_negatives_and_evaluate_on_lotte(tmp_path):
    for recipe in RECIPES:
        args = ("-n", "-p", "--configfile", str(REPO / "config" / "msmarco" / f"{recipe}.yaml"))
        proc = snakemake(*args, "--directory", str(tmp_path / recipe))
        jobs = planned_jobs(proc.stdout)
        assert jobs["lotte_fetch"] == 1 and jobs["lotte_prepare"] == 10 and jobs["lotte_qrels"] == 10, recipe
        assert jobs["evaluate"] == 3 * 11 and "msmarco_triples" not in jobs, recipe
        assert "negatives-file --src downloads/msmarco/msmarco-hard-negatives.jsonl.gz" in proc.stdout, recipe
        assert (
            "lotte qrels --src downloads/lotte/lotte --domain lifestyle --split test --query-set forum" in proc.stdout
        )
    distill = snakemake(*args, "--directory", str(tmp_path / "t"), "results/msmarco-disentangled-distill/round1/model")
    assert "--teacher-scores=downloads/msmarco/cross-encoder-ms-marco-MiniLM-L-6-v2-scores.pkl.gz" in distill.stdout


def test_bm25_is_scored_on_the_lotte_fixture_with_success_at_5(tmp_path):
    config = yaml.safe_load(FIXTURE_CONFIG.read_text())
    config["datasets"]["lt"] = {
        "kind": "lotte",
        "domain": "technology",
        "path": str(REPO / "tests/fixtures/lotte/lotte"),
    }
    config["data"]["eval"] = [{"dataset": "lt", "split": "test"}]
    config["eval"] = {**config.get("eval", {}), "metrics": ["ndcg@10", "success@5"]}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    target = f"{config.get('results_dir', 'results')}/{config['name']}/bm25/lt/metrics.test.json"
    snakemake("--cores", "1", target, "--configfile", str(path), "--directory", str(tmp_path))
    metrics = json.loads((tmp_path / target).read_text())["metrics"]
    assert 0.5 <= metrics["success@5"] <= 1.0 and metrics["ndcg@10"] > 0  # the fixture's words overlap
    config["data"]["eval"] = [{"dataset": "lt", "split": "dev"}]
    path.write_text(yaml.safe_dump(config))
    proc = snakemake("-n", "--configfile", str(path), "--directory", str(tmp_path / "bad"), check=False)
    assert proc.returncode != 0 and "datasets.lt.split" in proc.stdout + proc.stderr


def test_cocodr_encodes_passages_without_titles(tmp_path):
    recipe = str(REPO / "config" / "msmarco" / "cocodr.yaml")
    target = "results/msmarco-cocodr/data/msmarco/tokens.corpus.parquet"
    proc = snakemake("-n", "-p", "--configfile", recipe, "--directory", str(tmp_path), target)
    assert "--max-len 256 --template='{text}' --untitled-template='{text}'" in proc.stdout
