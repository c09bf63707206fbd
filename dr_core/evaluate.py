"""Evaluation with pytrec_eval (trec_eval's measures), and the summary table across systems."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytrec_eval

from dr_core.runs import trec_eval_order

# Our metric names -> (trec_eval measure, rank cut-off applied to the run first, or None).
METRICS: dict[str, tuple[str, int | None]] = {
    "ndcg@10": ("ndcg_cut_10", None),
    "mrr@10": ("recip_rank", 10),
    "recall@100": ("recall_100", None),
    "recall@1000": ("recall_1000", None),
    "map": ("map", None),
    "ndcg@100": ("ndcg_cut_100", None),
    "recall@10": ("recall_10", None),
    "p@10": ("P_10", None),
    # LoTTE's metric: 1 when any relevant (answer) passage is in the top 5 (trec_eval's success.5)
    "success@5": ("success_5", None),
}

# The recipe's eval.metrics default (workflow/schemas/config.schema.yaml; tests/test_compare.py checks it there).
DEFAULT_METRICS = ["ndcg@10", "mrr@10", "recall@100", "recall@1000", "map"]
# The recipe's eval.baselines default (tests/test_settings.py checks it there): every other system is tested
# against these in the summary.
DEFAULT_BASELINES = ["bm25", "round0"]
# The summary's tested metric (and its BEIR table's): ndcg@10, else the first metric of the table.
TESTED_METRIC = "ndcg@10"


def _measure_family(measure: str) -> str:
    for prefix in ("ndcg_cut", "recall", "P", "success"):
        if measure.startswith(prefix + "_"):
            return f"{prefix}.{measure[len(prefix) + 1 :]}"
    return measure


def _truncate(run: dict[str, dict[str, float]], depth: int) -> dict[str, dict[str, float]]:
    """Each query's first `depth` documents as trec_eval ranks them (ties by docid), so a cut-off through tied
    scores keeps the documents that the other measures (ndcg@10, P@10) see in the top ranks."""
    return {q: dict(trec_eval_order(d)[:depth]) for q, d in run.items()}


def evaluate(
    run: dict[str, dict[str, float]], qrels: pd.DataFrame, metrics: list[str]
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Mean and per-query scores; queries in qrels that the run misses count as 0 (trec_eval -c)."""
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; known: {sorted(METRICS)}")
    qrels_dict: dict[str, dict[str, int]] = {}
    for qid, docid, rel in zip(qrels["qid"], qrels["docid"], qrels["rel"]):
        qrels_dict.setdefault(qid, {})[docid] = int(rel)
    per_query: dict[str, dict[str, float]] = {q: {} for q in qrels_dict}
    for name in metrics:
        measure, cut = METRICS[name]
        sub = _truncate(run, cut) if cut else run
        evaluator = pytrec_eval.RelevanceEvaluator(qrels_dict, {_measure_family(measure)})
        scores = evaluator.evaluate({q: sub.get(q, {}) for q in qrels_dict})
        for q in qrels_dict:
            per_query[q][name] = scores.get(q, {}).get(measure, 0.0)
    n = len(per_query)
    mean = {name: sum(v[name] for v in per_query.values()) / n for name in metrics}
    return mean, per_query


def summary_table(metric_files: list[Path]) -> pd.DataFrame:
    """One row per metrics JSON file (system, dataset, split, then each metric)."""
    rows = []
    for path in metric_files:
        m = json.loads(Path(path).read_text())
        rows.append({"system": m["system"], "dataset": m["dataset"], "split": m["split"], **m["metrics"]})
    return pd.DataFrame(rows)


def beir_targets(summary: pd.DataFrame) -> list[str]:
    """Each summary row's BEIR column: `dataset`, or `dataset:split` when a dataset is scored on several splits."""
    several = summary.groupby("dataset")["split"].nunique()
    return [d if several[d] == 1 else f"{d}:{s}" for d, s in zip(summary["dataset"], summary["split"])]


def beir_table(summary: pd.DataFrame, metric: str = "ndcg@10", cells: pd.Series | None = None) -> pd.DataFrame:
    """BEIR/MTEB style: one row per system (in the summary's order), one column per evaluation target
    (`dataset`, or `dataset:split` when a dataset is scored on several splits) holding `metric`, and `avg`,
    the mean over targets (empty when a system misses one). `cells` (one per summary row, e.g. the value with
    significance marks) replaces the targets' values; `avg` stays the mean of `metric`."""
    target = beir_targets(summary)
    shape = {"index": summary["system"].unique(), "columns": list(dict.fromkeys(target))}
    table = summary.assign(target=target).pivot(index="system", columns="target", values=metric).reindex(**shape)
    avg = table.mean(axis=1, skipna=False)
    if cells is not None:
        table = summary.assign(target=target, cell=cells).pivot(index="system", columns="target", values="cell")
        table = table.reindex(**shape)
    table["avg"] = avg
    return table.reset_index()


def markdown_table(table: pd.DataFrame, digits: int = 4) -> str:
    """A pipe table; numbers to `digits` places, missing values empty."""

    def cell(v) -> str:
        if isinstance(v, float):
            return "" if v != v else f"{v:.{digits}f}"
        return str(v)

    lines = ["| " + " | ".join(map(str, table.columns)) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines) + "\n"
