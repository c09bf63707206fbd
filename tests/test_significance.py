"""Significance in the summary: paired t-tests against baselines, Holm's correction, the marks and the legend."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
from scipy.stats import ttest_rel

from dr_core import cli, plots
from dr_core.significance import holm, paired_pvalue

# Per-query nDCG@10 of three systems on two targets (8 queries each).
SCORES = {
    ("scifact", "test"): {
        "bm25": [0.5, 0.6, 0.4, 0.7, 0.3, 0.5, 0.6, 0.4],
        "round0": [0.2, 0.3, 0.1, 0.4, 0.1, 0.2, 0.2, 0.1],  # worse than bm25
        "round1": [0.7, 0.8, 0.5, 0.9, 0.5, 0.6, 0.8, 0.6],  # better than both
    },
    ("nf", "test"): {
        "bm25": [0.3, 0.2, 0.5, 0.4, 0.6, 0.1, 0.3, 0.2],
        "round0": [0.3, 0.1, 0.5, 0.5, 0.6, 0.2, 0.3, 0.2],  # about the same
        "round1": [0.3, 0.2, 0.5, 0.4, 0.6, 0.1, 0.3, 0.2],  # identical to bm25
    },
}


def test_the_p_value_is_scipys_paired_t_test_and_identical_scores_give_one():
    x, y = [0.9, 0.4, 0.7, 0.3, 0.8], [0.5, 0.45, 0.6, 0.1, 0.55]
    assert paired_pvalue(x, y) == pytest.approx(ttest_rel(x, y).pvalue, rel=1e-12)
    assert paired_pvalue(y, x) == pytest.approx(ttest_rel(x, y).pvalue, rel=1e-12)  # two-sided
    assert paired_pvalue(x, x) == 1.0  # zero variance of the differences: 1.0, not NaN
    assert paired_pvalue([0.5], [0.2]) is None  # one pair: no test


def test_holm_adjusts_step_down_monotone_and_capped_at_one():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.02, 0.021, 0.9]) == pytest.approx([0.06, 0.06, 0.9])  # 2 * 0.021 < 0.06: kept monotone
    assert holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])
    assert holm([0.2]) == [0.2] and holm([]) == []


def _write_metrics(tmp_path) -> list[str]:
    paths = []
    for (dataset, split), systems in SCORES.items():
        for system, values in systems.items():
            per_query = {f"q{i}": {"ndcg@10": v, "recall@100": 0.5} for i, v in enumerate(values)}
            metrics = {"ndcg@10": sum(values) / len(values), "recall@100": 0.5}
            path = tmp_path / f"{system}.{dataset}.{split}.json"
            record = {"system": system, "dataset": dataset, "split": split, "metrics": metrics, "per_query": per_query}
            path.write_text(json.dumps(record))
            paths.append(str(path))
    return paths


def _expected(dataset: str, baseline: str) -> dict[str, float]:
    """Holm over the two other systems of the target, written out for m = 2."""
    scores = SCORES[(dataset, "test")]
    raw = {s: ttest_rel(v, scores[baseline]).pvalue for s, v in scores.items() if s != baseline}
    raw = {s: 1.0 if scores[s] == scores[baseline] else p for s, p in raw.items()}
    (s1, p1), (s2, p2) = sorted(raw.items(), key=lambda kv: kv[1])
    return {s1: min(1.0, 2 * p1), s2: max(min(1.0, 2 * p1), p2)}


def _summarize(tmp_path, *extra: str) -> tuple[int, str, dict]:
    out = {"summary": tmp_path / "summary.tsv", "beir": tmp_path / "summary.beir.tsv"}
    args = ["summarize", "--metrics", *_write_metrics(tmp_path), "--out", str(out["summary"])]
    return cli.main([*args, "--beir-out", str(out["beir"]), *extra]), out


def test_summarize_writes_holm_adjusted_p_values_and_marks_the_tables(tmp_path, capsys):
    rc, out = _summarize(tmp_path)
    assert rc == 0
    printed = capsys.readouterr().out
    table = pd.read_csv(out["summary"], sep="\t", dtype=str, keep_default_na=False)
    assert list(table.columns) == ["system", "dataset", "split", "ndcg@10", "recall@100", "p_vs_bm25", "p_vs_round0"]
    for baseline in ("bm25", "round0"):
        for dataset in ("scifact", "nf"):
            rows = table[table["dataset"] == dataset].set_index("system")[f"p_vs_{baseline}"]
            assert rows[baseline] == ""  # no p-value against itself
            expected = _expected(dataset, baseline)
            assert rows.drop(baseline).to_dict() == {s: f"{p:.4g}" for s, p in expected.items()}
    assert table.set_index(["system", "dataset"]).loc[("round1", "nf"), "p_vs_bm25"] == "1"  # identical scores

    # marks after the tested metric: a = bm25, b = round0; scifact differs significantly, nf does not
    assert "0.6750 a+ b+" in printed and "0.2000 a-" in printed and "0.5000 b+" in printed
    assert not [line for line in printed.splitlines() if " nf " in line and re.search(r" [ab][+-]", line)]
    legend = [line for line in printed.splitlines() if line.startswith("Marks after ndcg@10")]
    assert len(legend) == 2  # under the summary and under the BEIR table
    for part in ("a = bm25, b = round0", "paired t-test", "two-sided", "Holm", "alpha = 0.05"):
        assert part in legend[0]
    assert "| round1 | 0.6750 a+ b+ | 0.3250 | 0.5000 |" in printed  # the BEIR markdown, marked per target
    beir = pd.read_csv(out["beir"], sep="\t", dtype=str, keep_default_na=False).set_index("system")
    assert beir.loc["round0", "scifact"] == "0.2000 a-" and beir.loc["round0", "nf"] == "0.3375"
    assert beir.loc["round1", "avg"] == "0.5000"

    plots.summary_html(out["summary"], tmp_path / "summary.html", beir=out["beir"])
    html = (tmp_path / "summary.html").read_text()
    assert "<td><b>0.6750</b> a+ b+</td>" in html and "<td>0.2000 a-</td>" in html
    assert html.count("Marks after ndcg@10: a = bm25, b = round0") == 2 and "p_vs_&lt;baseline&gt;" in html


def test_alpha_and_baselines_change_the_marks(tmp_path, capsys):
    rc, out = _summarize(tmp_path, "--baselines", "round0", "--alpha", "1e-9")
    assert rc == 0
    printed = capsys.readouterr().out
    assert list(pd.read_csv(out["summary"], sep="\t").columns)[-1:] == ["p_vs_round0"]
    assert " a+" not in printed and " a-" not in printed and "a = round0" in printed  # nothing below 1e-9


def test_an_unknown_baseline_is_an_error_and_nothing_is_written(tmp_path, caplog):
    rc, out = _summarize(tmp_path, "--baselines", "bm25", "dense")
    assert rc == 1
    assert "eval.baselines" in caplog.text and "['dense']" in caplog.text
    assert "['bm25', 'round0', 'round1']" in caplog.text  # the systems there are
    assert not out["summary"].exists() and not out["beir"].exists()
