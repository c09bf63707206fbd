"""The BEIR-style summary: nDCG@10 per system and evaluation dataset, and their mean."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from dr_core.evaluate import beir_table, markdown_table


def _metrics(tmp_path, rows) -> list[str]:
    paths = []
    for i, (system, dataset, split, ndcg) in enumerate(rows):
        path = tmp_path / f"m{i}.json"
        metrics = {"ndcg@10": ndcg, "recall@100": 0.5}
        path.write_text(json.dumps({"system": system, "dataset": dataset, "split": split, "metrics": metrics}))
        paths.append(str(path))
    return paths


def test_summarize_writes_the_beir_table_and_prints_it_as_markdown(tmp_path):
    rows = [
        ("bm25", "scifact", "test", 0.686), ("bm25", "cranfield", "test", 0.373),
        ("round1", "scifact", "test", 0.5), ("round1", "cranfield", "test", 0.2),
    ]  # fmt: skip
    out, beir = tmp_path / "summary.tsv", tmp_path / "summary.beir.tsv"
    cmd = [sys.executable, "-m", "dr_core", "summarize", "--metrics", *_metrics(tmp_path, rows), "--out", str(out)]
    cmd += ["--baselines", "bm25"]  # no round0 here (and no per-query scores: no p-values, no marks)
    proc = subprocess.run([*cmd, "--beir-out", str(beir)], capture_output=True, text=True, check=True)
    table = pd.read_csv(beir, sep="\t")
    assert list(table.columns) == ["system", "scifact", "cranfield", "avg"]
    assert table["system"].tolist() == ["bm25", "round1"]
    assert table["avg"].tolist() == pytest.approx([0.5295, 0.35])
    assert "| system | scifact | cranfield | avg |" in proc.stdout
    assert "| bm25 | 0.6860 | 0.3730 | 0.5295 |" in proc.stdout
    assert len(pd.read_csv(out, sep="\t")) == 4  # summary.tsv as before


def test_a_dataset_on_two_splits_gets_two_columns_and_a_missing_score_no_mean():
    summary = pd.DataFrame(
        [("a", "nf", "dev", 0.1), ("a", "nf", "test", 0.3), ("b", "nf", "test", 0.2)],
        columns=["system", "dataset", "split", "ndcg@10"],
    )
    table = beir_table(summary)
    assert list(table.columns) == ["system", "nf:dev", "nf:test", "avg"]
    assert table["avg"].tolist()[0] == pytest.approx(0.2) and pd.isna(table["avg"].tolist()[1])
    assert "| b |  | 0.2000 |  |" in markdown_table(table)
