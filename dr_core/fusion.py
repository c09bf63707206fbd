"""Hybrid retrieval: BM25 fused with a dense run, by reciprocal-rank fusion or a convex sum of normalised scores.

Both runs are first cut to the same depth, so the per-query min-max normalisation is the same when the convex
weight is tuned (on train or dev queries) and when the fused run is evaluated. A document missing from one run
gets that run's normalised minimum (0) in the convex sum and no term in RRF. Fused runs are ranked by
dr_core.runs.rank_frame (scores rounded to the run file's precision, equal scores by doc id descending: trec_eval's
order), so the written ranks are the ones evaluation (pytrec_eval) and mining see.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dr_core.evaluate import evaluate
from dr_core.runs import rank_frame, run_to_dict

METHODS = ("convex", "rrf")
GRID_STEP = 0.05
TUNE_METRIC = "ndcg@10"


def cut(run: pd.DataFrame, depth: int) -> pd.DataFrame:
    """The first `depth` documents of each query of a run sorted by (qid, rank), re-ranked 1..depth."""
    top = run.groupby("qid", sort=False).head(depth).copy()
    top["rank"] = top.groupby("qid", sort=False).cumcount() + 1
    return top


def minmax(run: pd.DataFrame) -> pd.Series:
    """Scores scaled to [0, 1] per query; a query whose scores are all equal gets 1 for each."""
    scores = run.groupby("qid", sort=False)["score"]
    low, span = scores.transform("min"), scores.transform("max") - scores.transform("min")
    return ((run["score"] - low) / span.where(span > 0)).fillna(1.0)


def align(bm25: pd.DataFrame, dense: pd.DataFrame, depth: int) -> pd.DataFrame:
    """One row per (qid, docid) of either run cut to `depth`: `<run>_rank` (NaN when missing), `<run>_norm` (0)."""
    parts = []
    for name, run in (("bm25", bm25), ("dense", dense)):
        top = cut(run, depth)
        parts.append(
            pd.DataFrame(
                {"qid": top["qid"], "docid": top["docid"], f"{name}_rank": top["rank"], f"{name}_norm": minmax(top)}
            )
        )
    pairs = parts[0].merge(parts[1], on=["qid", "docid"], how="outer")
    pairs[["bm25_norm", "dense_norm"]] = pairs[["bm25_norm", "dense_norm"]].fillna(0.0)
    return pairs


def convex_scores(pairs: pd.DataFrame, weight: float) -> pd.Series:
    """`weight * dense + (1 - weight) * bm25` over the normalised scores."""
    return weight * pairs["dense_norm"] + (1.0 - weight) * pairs["bm25_norm"]


def rrf_scores(pairs: pd.DataFrame, k: int) -> pd.Series:
    """Reciprocal-rank fusion: the sum of 1 / (k + rank) over the runs that retrieved the document."""
    return (1.0 / (k + pairs["bm25_rank"])).fillna(0.0) + (1.0 / (k + pairs["dense_rank"])).fillna(0.0)


def ranked(pairs: pd.DataFrame, scores: pd.Series) -> pd.DataFrame:
    """A run (qid, docid, rank, score), qids ascending, each query in dr_core.runs' order (`rank_frame`)."""
    return rank_frame(pairs["qid"], pairs["docid"], scores)


def fuse(
    bm25: pd.DataFrame,
    dense: pd.DataFrame,
    method: str,
    depth: int,
    weight: float | None = None,
    rrf_k: int = 60,
) -> pd.DataFrame:
    """The fused run of two runs (DataFrames of dr_core.runs.read_trec); `weight` is the convex sum's dense weight."""
    if depth < 1:
        raise ValueError(f"hybrid.depth must be >= 1, got {depth}")
    pairs = align(bm25, dense, depth)
    if method == "rrf":
        if rrf_k < 0:
            raise ValueError(f"hybrid.rrf_k must be >= 0, got {rrf_k}")
        return ranked(pairs, rrf_scores(pairs, rrf_k))
    if method != "convex":
        raise ValueError(f"hybrid.method must be one of {METHODS}, got '{method}'")
    if weight is None or not 0.0 <= weight <= 1.0:
        raise ValueError(f"hybrid.weight must be in [0, 1], got {weight}")
    return ranked(pairs, convex_scores(pairs, weight))


def weight_grid(step: float = GRID_STEP) -> np.ndarray:
    """0, step, 2 step, ..., 1."""
    return np.round(np.linspace(0.0, 1.0, round(1.0 / step) + 1), 10)


def tune_weight(
    bm25: pd.DataFrame, dense: pd.DataFrame, qrels: pd.DataFrame, depth: int, step: float = GRID_STEP
) -> dict:
    """The convex weight maximising the fused run's nDCG@10 on the queries of `qrels` (ties: the smaller weight).

    Only the queries judged in `qrels` (the tune split) are fused and scored; returns the weight and the grid.
    """
    judged = set(qrels["qid"])
    pairs = align(bm25[bm25["qid"].isin(judged)], dense[dense["qid"].isin(judged)], depth)
    grid = weight_grid(step)
    values = [evaluate(run_to_dict(ranked(pairs, convex_scores(pairs, w))), qrels, [TUNE_METRIC])[0] for w in grid]
    scores = [v[TUNE_METRIC] for v in values]
    best = int(np.argmax(scores))  # first maximum: the smaller weight wins a tie
    return {
        "method": "convex",
        "weight": float(grid[best]),
        "metric": TUNE_METRIC,
        "best": scores[best],
        "depth": depth,
        "queries": len(judged),
        "grid": [{"weight": float(w), TUNE_METRIC: s} for w, s in zip(grid, scores)],
    }
