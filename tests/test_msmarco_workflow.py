"""The MS MARCO path of the DAG, end to end on MS MARCO-format files made from the tiny fixture collection."""

from __future__ import annotations

import gzip
import json

import pandas as pd
import pytest
import yaml
from conftest import REPO, TINY_BEIR
from test_workflow import planned_jobs, snakemake

from dr_core.data.formats import read_trec_qrels


def write_msmarco_files(dest) -> None:
    """para.txt, para.title.txt, queries, TREC qrels and CRLF triples, as the published files are laid out."""
    dest.mkdir()
    docs = [json.loads(x) for x in (TINY_BEIR / "corpus.jsonl").read_text().splitlines()]
    queries = {q["_id"]: q["text"] for q in map(json.loads, (TINY_BEIR / "queries.jsonl").read_text().splitlines())}
    (dest / "para.txt").write_text("".join(f"{d['_id']}\t{d['text']}\n" for d in docs))
    (dest / "para.title.txt").write_text("".join(f"{d['_id']}\t{d['title']}\n" for d in docs if d["title"]))
    splits = {}
    for split, name in (("train", "train.query.txt"), ("test", "queries.dev.small.tsv")):
        rows = pd.read_csv(TINY_BEIR / "qrels" / f"{split}.tsv", sep="\t", dtype=str)
        splits[split] = rows
        (dest / name).write_text("".join(f"{q}\t{queries[q]}\n" for q in dict.fromkeys(rows["query-id"])))
    (dest / "qrels.train.tsv").write_text(
        "".join(f"{q}\t0\t{d}\t1\n" for q, d in zip(splits["train"]["query-id"], splits["train"]["corpus-id"]))
    )
    (dest / "qrels.dev.small.tsv").write_text(
        "".join(f"{q}\t0\t{d}\t1\n" for q, d in zip(splits["test"]["query-id"], splits["test"]["corpus-id"]))
    )
    ids = [d["_id"] for d in docs]
    triples = [
        f"{q}\t{d}\t{ids[(i * 7 + k) % len(ids)]}\r\n"
        for i, (q, d) in enumerate(zip(splits["train"]["query-id"], splits["train"]["corpus-id"]))
        for k in range(3)
    ]
    with gzip.open(dest / "qidpidtriples.train.full.2.tsv.gz", "wt", newline="") as f:
        f.writelines(triples)


def test_recipes_show_the_whole_dag_from_download_to_dev_evaluation(tmp_path):
    # tevatron.yaml reads Tevatron's own datasets (test_tevatron_datasets dry-runs it)
    for recipe in ("openmatch", "openmatch-t5", "retromae", "disentangled"):
        proc = snakemake(
            "-n",
            "--configfile",
            str(REPO / "config" / "msmarco" / f"{recipe}.yaml"),
            "--directory",
            str(tmp_path / recipe),
        )
        jobs = planned_jobs(proc.stdout)
        assert jobs["msmarco_fetch"] >= 6 and jobs["msmarco_join"] == 1 and jobs["msmarco_qrels"] == 2, recipe
        assert jobs["train"] >= 1 and jobs["evaluate"] >= 3 and jobs["msmarco_run"] >= 3, recipe
        assert ("msmarco_triples" in jobs) == recipe.startswith("openmatch"), recipe
        assert jobs.get("scale_t5", 0) == (recipe == "openmatch-t5"), recipe  # T5 scaled before round 0
    assert (
        "torchrun --standalone --nproc_per_node 4 -m -- dr_core"
        in snakemake(
            "-n",
            "-p",
            "--configfile",
            str(REPO / "config/msmarco/disentangled.yaml"),
            "--directory",
            str(tmp_path / "p"),
            "results/msmarco-disentangled/round1/model",
        ).stdout
    )


@pytest.mark.slow
def test_msmarco_fixture_runs_end_to_end(tmp_path):
    write_msmarco_files(tmp_path / "marco")
    config = {
        "name": "mm",
        "datasets": {"msmarco": {"kind": "msmarco", "path": str(tmp_path / "marco")}},
        "data": {"train": {"dataset": "msmarco", "split": "train"}, "eval": [{"dataset": "msmarco", "split": "dev"}]},
        "model": {"base": "pkg:cognition/model", "q_max_len": 16, "p_max_len": 48},
        "negatives": {"source": "triples", "mine": {"depth": 20, "rank_min": 2, "rank_max": 20, "n": 5}},
        "train": {"epochs": 1, "batch_size": 4, "group_size": 3, "lr": 1.0e-4},
        "ance": {"rounds": 2},
        "encode": {"num_shards": 1},
        "eval": {"depth": 48},
        "resources": {"default": {"threads": 1}, "gpu_default": {"threads": 1, "gpu": 0}},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    snakemake("--cores", "2", "--configfile", str(tmp_path / "config.yaml"), "--directory", str(tmp_path))
    out = tmp_path / "results" / "mm"
    # Round-1 negatives are the triples grouped per query (3 per train triple row, 28 rows over 16 queries).
    negatives = dict(line.split("\t") for line in (out / "round1" / "train_negatives.tsv").read_text().splitlines())
    assert len(negatives) == 16 and sum(len(v.split(",")) for v in negatives.values()) == 28 * 3
    summary = pd.read_csv(out / "summary.tsv", sep="\t")
    assert summary["system"].tolist() == ["bm25", "round0", "round1", "round2"]
    # MRR@10 of the MS MARCO-format run, by an independent implementation (ranx), agrees with the metrics table.
    from ranx import Qrels, Run, evaluate

    qrels = Qrels(read_trec_qrels(tmp_path / "marco" / "qrels.dev.small.tsv"))
    for system in summary["system"]:
        metrics = json.loads((out / system / "msmarco" / "metrics.dev.json").read_text())["metrics"]
        lines = [x.split("\t") for x in (out / system / "msmarco" / "run.dev.msmarco.tsv").read_text().splitlines()]
        assert all(len(x) == 3 for x in lines)
        run: dict = {}
        for qid, pid, rank in lines:
            run.setdefault(qid, {})[pid] = -float(rank)
        mrr = evaluate(qrels, Run(run), "mrr@10", make_comparable=True)
        assert mrr == pytest.approx(metrics["mrr@10"], abs=1e-9), system
    assert (
        "Nothing to be done"
        in snakemake("-n", "--configfile", str(tmp_path / "config.yaml"), "--directory", str(tmp_path)).stdout
    )
