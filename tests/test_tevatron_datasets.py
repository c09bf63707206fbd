"""Tevatron's datasets (issue 13): query groups and corpora in Tevatron's Hugging Face format, read through
`datasets` from local JSON-lines and Parquet files with no network, become the workflow's tables; bad rows are
named and leave nothing; the Tevatron recipe's DAG; a fixture run that trains from such files end to end."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import REPO, TINY_BEIR
from test_workflow import FIXTURE_CONFIG, planned_jobs, snakemake

from dr_core.data import tevatron
from dr_core.data.beir import prepare_collection, prepare_qrels
from dr_core.data.formats import read_negatives
from dr_core.data.msmarco.toolkits import read_tevatron_groups
from dr_core.errors import DataError


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No network: `datasets` and the Hub client read local files only (the workflow's subprocesses inherit it)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


DOCS = {d["_id"]: d for d in _jsonl(TINY_BEIR / "corpus.jsonl")}
QUERIES = {q["_id"]: q["text"] for q in _jsonl(TINY_BEIR / "queries.jsonl")}


def qrels(split: str) -> pd.DataFrame:
    return pd.read_csv(TINY_BEIR / "qrels" / f"{split}.tsv", sep="\t", dtype=str)


def passage(docid: str) -> dict:
    return {"docid": docid, "title": DOCS[docid]["title"], "text": DOCS[docid]["text"]}


def group_rows(split: str, negatives: int) -> list[dict]:
    """Tevatron groups of the fixture's `split`: its judged passages as positives, `negatives` others each."""
    judged = qrels(split).groupby("query-id", sort=False)["corpus-id"].agg(list)
    ids = list(DOCS)
    rows = []
    for i, (qid, positives) in enumerate(judged.items()):
        others = [d for k in range(len(ids)) if (d := ids[(i * 7 + k) % len(ids)]) not in positives]
        rows.append(
            {
                "query_id": qid,
                "query": QUERIES[qid],
                "positive_passages": [passage(d) for d in positives],
                "negative_passages": [passage(d) for d in others[:negatives]],
            }
        )
    return rows


def write_rows(rows: list[dict], path: Path) -> Path:
    if path.suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
    else:
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_sources_are_hub_datasets_or_data_files(tmp_path):
    assert tevatron.load_arguments("Tevatron/msmarco-passage/dev") == {
        "path": "json",
        "data_files": "hf://datasets/Tevatron/msmarco-passage/dev.jsonl.gz",
        "split": "train",
    }
    assert tevatron.load_arguments("Tevatron/msmarco-passage-corpus")["data_files"].endswith("/corpus.jsonl.gz")
    assert tevatron.load_arguments("someone/groups") == {"path": "someone/groups", "split": "train"}
    assert tevatron.load_arguments("someone/groups/dev") == {"path": "someone/groups", "split": "dev"}
    assert tevatron.load_arguments("hf://datasets/someone/groups/train.parquet")["path"] == "parquet"
    local = write_rows([], tmp_path / "groups.jsonl.gz")
    assert tevatron.load_arguments(str(local)) == {"path": "json", "data_files": str(local), "split": "train"}
    with pytest.raises(FileNotFoundError, match="missing.parquet: no such data file"):
        tevatron.load_arguments(str(tmp_path / "missing.parquet"))
    with pytest.raises(ValueError, match="has no split 'test'"):
        tevatron.load_arguments("Tevatron/msmarco-passage/test")
    with pytest.raises(ValueError, match="neither a data file"):
        tevatron.load_arguments("groups.tsv")


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_corpus_and_groups_become_the_workflow_tables(tmp_path, suffix):
    cache = tmp_path / "hf"
    beir = tmp_path / "beir"
    prepare_collection(TINY_BEIR, beir)
    prepare_qrels(TINY_BEIR, "train", beir / "corpus.parquet", beir / "queries.parquet", beir / "qrels.parquet")
    corpus = write_rows([passage(d) for d in DOCS], tmp_path / f"corpus{suffix}")
    groups = write_rows(group_rows("train", negatives=3), tmp_path / f"train{suffix}")
    out = tmp_path / "out"
    assert tevatron.write_corpus(str(corpus), out / "corpus.parquet", cache) == len(DOCS)
    tevatron.write_split(str(groups), out / "corpus.parquet", *_outputs(out), cache)
    records = pd.read_parquet(out / "corpus.parquet").to_dict("records")
    assert records == pd.read_parquet(beir / "corpus.parquet").to_dict("records")
    assert pd.read_parquet(out / "qrels.parquet").to_dict("records") == pd.read_parquet(beir / "qrels.parquet").to_dict(
        "records"
    )
    train_qids = list(dict.fromkeys(qrels("train")["query-id"]))
    queries = pd.read_parquet(out / "queries.parquet")
    assert list(zip(queries["qid"], queries["text"])) == [(q, QUERIES[q]) for q in train_qids]
    expected = {row["query_id"]: [p["docid"] for p in row["negative_passages"]] for row in group_rows("train", 3)}
    assert read_negatives(out / "negatives.tsv") == expected and all(len(v) == 3 for v in expected.values())
    assert read_tevatron_groups(groups) == expected  # negatives.file reads through the same reader


def _outputs(out: Path) -> tuple[Path, Path, Path]:
    return out / "qrels.parquet", out / "queries.parquet", out / "negatives.tsv"


def test_a_split_of_queries_only_is_judged_by_a_qrels_file(tmp_path):
    """As Tevatron's guide evaluates MS MARCO dev: the groups hold the queries, MS MARCO's qrels judge them."""
    out = tmp_path / "out"
    corpus = write_rows([passage(d) for d in DOCS], tmp_path / "c.parquet")
    tevatron.write_corpus(str(corpus), out / "corpus.parquet", tmp_path / "hf")
    rows = [{"query_id": r["query_id"], "query": r["query"], "positive_passages": []} for r in group_rows("test", 0)]
    groups = str(write_rows(rows, tmp_path / "dev.jsonl"))
    test = qrels("test")
    judgements = tmp_path / "qrels.dev.small.tsv"
    judgements.write_text("".join(f"{q}\t0\t{d}\t1\n" for q, d in zip(test["query-id"], test["corpus-id"])))
    with pytest.raises(DataError, match=r"dev.jsonl:1: no positive_passages"):
        tevatron.write_split(groups, out / "corpus.parquet", *_outputs(out), tmp_path / "hf")
    tevatron.write_split(groups, out / "corpus.parquet", *_outputs(out), tmp_path / "hf", judgements)
    written = pd.read_parquet(out / "qrels.parquet")
    assert list(zip(written["qid"], written["docid"], written["rel"])) == [
        (q, d, 1) for q, d in zip(test["query-id"], test["corpus-id"])
    ]
    assert (out / "negatives.tsv").read_text() == ""


def _break(rows: list[dict], how: str) -> list[dict]:
    """The fixture's train groups with row 2 broken in one way."""
    row = rows[1]
    if how == "query_id":
        del row["query_id"]
    elif how == "positives":
        del row["positive_passages"]
    elif how == "docid":
        del row["negative_passages"][1]["docid"]
    elif how == "unknown":
        row["positive_passages"][0]["docid"] = "no-such-passage"
    elif how == "duplicate":
        row["query_id"] = rows[0]["query_id"]
    return rows


BAD_GROUPS = [
    ("query_id", r"train\.jsonl:2: no 'query_id'"),
    ("positives", r"train\.jsonl:2: no positive_passages"),
    ("docid", r"train\.jsonl:2: a passage of negative_passages has no 'docid'"),
    ("unknown", r"train\.jsonl:2: unknown docid 'no-such-passage' among the positives"),
    ("duplicate", r"train\.jsonl:2: duplicate query_id 'q1' \(first on row 1\)"),
]


@pytest.mark.parametrize("how, message", BAD_GROUPS, ids=[b[0] for b in BAD_GROUPS])
def test_bad_groups_are_named_by_row_and_leave_nothing(tmp_path, how, message):
    out = tmp_path / "out"
    corpus = write_rows([passage(d) for d in DOCS], tmp_path / "c.jsonl")
    tevatron.write_corpus(str(corpus), out / "corpus.parquet", tmp_path / "hf")
    groups = write_rows(_break(group_rows("train", 3), how), tmp_path / "train.jsonl")
    with pytest.raises(DataError, match=message):
        tevatron.write_split(str(groups), out / "corpus.parquet", *_outputs(out), tmp_path / "hf")
    assert sorted(p.name for p in out.iterdir()) == ["corpus.parquet"]


BAD_CORPORA = [
    ([{"docid": "a", "text": "x"}, {"title": "t", "text": "y"}], r"corpus\.parquet:2: no 'docid'"),
    ([{"docid": "a", "text": "x"}, {"docid": "a", "text": "y"}], r"corpus\.parquet:2: duplicate docid 'a'"),
    ([{"docid": "a", "contents": "x"}], r"corpus\.parquet:1: no 'text'"),
]


@pytest.mark.parametrize("rows, message", BAD_CORPORA)
def test_bad_corpus_rows_are_named_and_leave_nothing(tmp_path, rows, message):
    """Through the command line, as the workflow runs it: exit status 1, the file and row on stderr."""
    corpus = write_rows(rows, tmp_path / "corpus.parquet")
    out = tmp_path / "out" / "corpus.parquet"
    cmd = [sys.executable, "-m", "dr_core", "tevatron", "corpus", "--src", str(corpus), "--out", str(out)]
    proc = subprocess.run([*cmd, "--cache-dir", str(tmp_path / "hf")], capture_output=True, text=True)
    assert proc.returncode == 1 and re.search(message, proc.stderr), proc.stderr
    assert not out.parent.exists() or not any(out.parent.iterdir())


def test_unreadable_json_is_named(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text('{"query_id": "1", "query": "q", "positive_passages": [{"docid": "1"}]}\n[]\n')
    with pytest.raises(DataError, match=r"train\.jsonl: not readable as rows \(JSON parse error"):
        tevatron.read_groups(str(path), tmp_path / "hf")


def test_tevatron_recipe_shows_the_whole_dag_from_the_hub_datasets(tmp_path):
    recipe = str(REPO / "config" / "msmarco" / "tevatron.yaml")
    proc = snakemake("-n", "-p", "--configfile", recipe, "--directory", str(tmp_path))
    jobs = planned_jobs(proc.stdout)
    assert jobs["tevatron_corpus"] == 1 and jobs["tevatron_groups"] == 2 and jobs["tevatron_queries"] == 1
    assert jobs["msmarco_fetch"] == 1 and jobs["first_negatives"] == 1 and "mine" not in jobs
    assert jobs["train"] == 1 and jobs["evaluate"] == 3 and jobs["summary"] == 1
    assert "tevatron corpus --src Tevatron/msmarco-passage-corpus --cache-dir downloads/huggingface" in proc.stdout
    assert "--negatives-out results/msmarco-tevatron/data/msmarco/tevatron.negatives.train.tsv  >" in proc.stdout
    assert "tevatron.negatives.dev.tsv --judgements downloads/msmarco/qrels.dev.small.tsv" in proc.stdout


def tevatron_config(tmp_path: Path, **changes) -> Path:
    """The fixture recipe on the fixture collection in Tevatron's format: corpus Parquet, train groups JSON
    lines (3 negatives each, the round-1 negatives), test groups Parquet; one round."""
    config = yaml.safe_load(FIXTURE_CONFIG.read_text())
    files = tmp_path / "tevatron"
    files.mkdir(exist_ok=True)
    config["datasets"] = {
        "tv": {
            "kind": "tevatron",
            "corpus": str(write_rows([passage(d) for d in DOCS], files / "corpus.parquet")),
            "groups": {
                "train": str(write_rows(group_rows("train", 3), files / "train.jsonl")),
                "test": str(write_rows(group_rows("test", 0), files / "test.parquet")),
            },
        }
    }
    config["data"] = {"mirror": None, "train": {"dataset": "tv", "split": "train"}, "eval": [{"dataset": "tv"}]}
    config["data"]["eval"][0]["split"] = "test"
    config["negatives"] = {"source": "tevatron", "mine": config["negatives"]["mine"]}
    config["ance"] = {"rounds": 1}
    for dotted, value in changes.items():
        node = config
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node[key]
        node[leaf] = value
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize(
    "change, message",
    [
        ({"data.eval": [{"dataset": "tv", "split": "dev"}]}, "datasets.tv.groups has no split 'dev'"),
        ({"datasets.tv.corpus": ""}, "datasets.tv.corpus is required (kind tevatron)"),
    ],
)
def test_a_split_or_corpus_missing_from_the_config_is_refused(tmp_path, change, message):
    config = str(tevatron_config(tmp_path, **change))
    proc = snakemake("-n", "--configfile", config, "--directory", str(tmp_path), check=False)
    assert proc.returncode != 0 and message in proc.stdout + proc.stderr


@pytest.mark.slow
def test_the_workflow_trains_from_tevatron_files_end_to_end(tmp_path):
    """From the files to round 1's metrics on the test split (BM25 and round 0 are the other recipes' business)."""
    config = str(tevatron_config(tmp_path, **{"encode.num_shards": 1}))
    target = "results/tiny/round1/tv/metrics.test.json"
    snakemake("--cores", "2", target, "--configfile", config, "--directory", str(tmp_path))
    out = tmp_path / "results" / "tiny"
    expected = {r["query_id"]: [p["docid"] for p in r["negative_passages"]] for r in group_rows("train", 3)}
    assert read_negatives(out / "round1" / "train_negatives.tsv") == expected  # round 1 trains on the groups' own
    test = qrels("test")
    written = pd.read_parquet(out / "data" / "tv" / "qrels.test.parquet")
    assert list(zip(written["qid"], written["docid"])) == list(zip(test["query-id"], test["corpus-id"]))
    metrics = json.loads((tmp_path / target).read_text())["metrics"]
    assert metrics["ndcg@10"] > 0 and len(pd.read_parquet(out / "data" / "tv" / "queries.parquet")) == 24
    assert (tmp_path / "downloads" / "huggingface").is_dir()  # datasets' cache, kept outside results/
    rerun = snakemake("-n", target, "--configfile", config, "--directory", str(tmp_path))
    assert "Nothing to be done" in rerun.stdout
