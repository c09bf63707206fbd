"""The run-file contract of dr_core.runs: one line format, one precision, one tie order, used by every writer."""

import re

import numpy as np
import pandas as pd
import pytest

from dr_core import reranker, tryout
from dr_core.fusion import fuse, ranked
from dr_core.runs import (
    SCORE_DECIMALS,
    msmarco_line,
    rank_frame,
    rank_order,
    read_trec,
    round_scores,
    sorted_codes,
    tie_keys,
    trec_eval_order,
    trec_line,
    write_msmarco_run,
    write_trec,
    write_trec_frame,
)
from dr_core.search import rank_rows, write_trec_batch

# Equal scores as written: "d3" > "d10" > "a" in string order, and 0.5000004 and 0.4999996 both write 0.500000.
TIED = {"d10": 0.9, "a": 0.9, "d3": 0.9, "b": 0.5000004, "c": 0.4999996, "z": 0.1}
CONTRACT = ["d3", "d10", "a", "c", "b", "z"]  # score as written descending, then doc id descending


def _decimals(line: str) -> int:
    return len(line.split()[4].split(".")[1])


def test_line_formats_and_precision():
    assert trec_line("q1", "d7", 3, 1 / 3, "tag") == "q1 Q0 d7 3 0.333333 tag\n"
    assert _decimals(trec_line("q", "d", 1, np.float32(2.5), "t")) == SCORE_DECIMALS
    assert msmarco_line("q1", "d7", 3) == "q1\td7\t3\n"
    assert round_scores(np.array([0.12345649, 0.1234565001])).tolist() == [0.123456, 0.123457]


def test_the_writers_round_trip_through_the_reader(tmp_path):
    run = pd.DataFrame(
        {"qid": ["q2", "q2", "q10"], "docid": ["b", "a", "x"], "rank": [1, 2, 1], "score": [2.0, 1 / 3, -0.25]}
    )
    write_trec_frame(tmp_path / "frame.trec", run, "t")
    back = read_trec(tmp_path / "frame.trec")
    want = run.sort_values(["qid", "rank"], ignore_index=True).assign(score=lambda df: round_scores(df["score"]))
    pd.testing.assert_frame_equal(back, want, check_dtype=False)
    docids, scores = np.array([["b", "a"], ["x", ""]]), np.array([[2, 1 / 3], [-0.25, 0]])  # '' pads
    write_trec(tmp_path / "rows.trec", ["q2", "q10"], docids, scores, "t")
    assert (tmp_path / "rows.trec").read_text() == (tmp_path / "frame.trec").read_text()
    assert all(_decimals(line) == SCORE_DECIMALS for line in (tmp_path / "rows.trec").read_text().splitlines())


def test_ties_follow_the_contract_in_every_ranking_writer(tmp_path):
    docids, scores = list(TIED), np.array(list(TIED.values()))
    # the one ordering function
    assert [docids[i] for i in rank_order(round_scores(scores), sorted_codes(docids))] == CONTRACT
    # the dense search (one query's faiss results, in a scrambled order) and its batch writer
    ids = np.array(docids)
    rows, written = rank_rows(scores[None, ::-1].copy(), np.arange(len(ids))[None, ::-1].copy(), tie_keys(ids))
    assert ids[rows[0]].tolist() == CONTRACT
    with open(tmp_path / "dense.trec", "w", encoding="utf-8") as f:
        write_trec_batch(f, ["q1"], ids, rows, written, "dense")
    dense = read_trec(tmp_path / "dense.trec")
    assert dense["docid"].tolist() == CONTRACT
    assert all(_decimals(line) == SCORE_DECIMALS for line in (tmp_path / "dense.trec").read_text().splitlines())
    # trec_eval's order (evaluation's depth cut) and the MS MARCO writer, on the scores as written
    assert [d for d, _ in trec_eval_order(dict(zip(dense["docid"], dense["score"])))] == CONTRACT
    write_msmarco_run({"q1": list(zip(dense["docid"][::-1], dense["score"][::-1]))}, tmp_path / "run.tsv")
    assert (tmp_path / "run.tsv").read_text() == "".join(msmarco_line("q1", d, r) for r, d in enumerate(CONTRACT, 1))
    # fusion: all dense weight, so the fused scores are the dense ones min-max scaled (ties stay ties)
    fused = fuse(dense.assign(score=0.0), dense, "convex", len(CONTRACT), weight=1.0)
    assert fused["docid"].tolist() == CONTRACT and fused["rank"].tolist() == list(range(1, 7))
    pairs = pd.DataFrame({"qid": "q1", "docid": docids})
    assert ranked(pairs, pd.Series(scores))["docid"].tolist() == CONTRACT
    assert rank_frame(pairs["qid"], pairs["docid"], pd.Series(scores))["docid"].tolist() == CONTRACT


def test_tryout_hybrid_is_ranked_by_the_contract_and_dense_keeps_the_searchers_order(monkeypatch):
    docids, scores = list(TIED), list(TIED.values())
    given = pd.DataFrame({"qid": "q1", "docid": docids[::-1], "rank": range(1, 7), "score": scores[::-1]})

    class Dense:
        def run(self, queries, k):
            return given.head(k)

    monkeypatch.setattr(tryout, "bm25_run", lambda corpus, queries, k: given.assign(score=0.0).head(k))
    queries = pd.DataFrame({"qid": ["q1"], "text": ["x"]})
    hybrid = tryout.system_run("hybrid", queries, 6, "unused", dense=Dense(), weight=1.0, depth=6)
    assert hybrid["docid"].tolist() == CONTRACT
    # the dense and BM25 systems write the searcher's order (faiss's, bm25s's), as `_ranked` documents
    ours = tryout._ranked([given[["qid", "docid", "score"]]])
    assert ours["docid"].tolist() == docids[::-1] and ours["rank"].tolist() == list(range(1, 7))


def test_the_reranker_keeps_the_first_stage_order_of_equal_scores(monkeypatch):
    """The reranker's documented difference: equal cross-encoder scores keep the first stage's order (not doc id)."""
    run = pd.DataFrame({"qid": "q1", "docid": ["a", "d3", "b", "d10", "z"], "rank": range(1, 6)})
    run = run.assign(score=10.0 - run["rank"])
    monkeypatch.setattr(reranker, "cross_encoder_scores", lambda model, pairs, b, m: np.array([1.0, 2.0, 1.0, 2.0]))
    texts = {d: d for d in run["docid"]}
    out = reranker.rerank(run, "unused", {"q1": "q"}, texts, depth=4, batch_size=2, max_len=8)
    assert out["docid"].tolist() == ["d3", "d10", "a", "b", "z"] and out["rank"].tolist() == [1, 2, 3, 4, 5]


# The implementations each writer had before dr_core.runs owned the order: the refactor must not change a line.
def _old_fusion_ranked(pairs, scores):
    out = pd.DataFrame({"qid": pairs["qid"], "docid": pairs["docid"], "score": scores.round(6)})
    out = out.sort_values(["qid", "score", "docid"], ascending=[True, False, False], kind="stable", ignore_index=True)
    out["rank"] = out.groupby("qid", sort=False).cumcount() + 1
    return out[["qid", "docid", "rank", "score"]]


def _old_trec_eval_order(scores):
    pairs = sorted(scores.items() if isinstance(scores, dict) else scores, key=lambda pair: pair[0], reverse=True)
    pairs.sort(key=lambda pair: -pair[1])
    return pairs


def _old_rank_rows(scores, rows, keys):
    rounded = np.where(rows >= 0, np.round(scores.astype(np.float64), 6), -np.inf)
    tie = np.where(rows >= 0, keys[np.maximum(rows, 0)], -1)
    order = np.lexsort((-tie, -rounded), axis=-1)
    return np.take_along_axis(rows, order, axis=1), np.take_along_axis(rounded, order, axis=1)


def _old_rerank(run, head_scores, depth):
    head = run[run["rank"] <= depth].assign(score=head_scores)
    floor = head.groupby("qid")["score"].min()
    tail = run[run["rank"] > depth]
    tail = tail.assign(score=tail["qid"].map(floor).fillna(0.0) - (tail["rank"] - depth).astype(float))
    out = pd.concat([head, tail]).sort_values(["qid", "score"], ascending=[True, False], kind="stable")
    return out.assign(rank=out.groupby("qid").cumcount() + 1).reset_index(drop=True)


@pytest.mark.parametrize("seed", range(20))
def test_the_shared_order_reproduces_each_writers_former_order(seed, monkeypatch):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 400))
    # few distinct scores, some equal only once rounded: many ties of every kind
    base = np.round(rng.random(n) * 3, int(rng.integers(1, 7))) + rng.choice([0.0, 1e-7, 4e-7, -3e-7], n)
    qids, docids = [f"q{i}" for i in rng.integers(0, 12, n)], [f"d{i}" for i in rng.integers(0, 900, n)]
    pairs = pd.DataFrame({"qid": qids, "docid": docids})
    keep = ~pairs.duplicated().to_numpy()
    pairs, base = pairs[keep].reset_index(drop=True), base[keep]
    pd.testing.assert_frame_equal(ranked(pairs, pd.Series(base)), _old_fusion_ranked(pairs, pd.Series(base)))

    one = dict(zip(pairs["docid"], base))
    assert trec_eval_order(one) == _old_trec_eval_order(one)
    listed = list(zip(pairs["docid"], np.round(base, 1)))  # repeated doc ids keep their order too
    assert trec_eval_order(listed) == _old_trec_eval_order(listed)

    ids = np.array([f"d{i}" for i in rng.permutation(200)])
    scores = np.round(rng.random((7, 30)), 2).astype(np.float32)
    rows = np.stack([rng.choice(200, 30, replace=False) for _ in range(7)])
    rows[:, -3:] = -1  # padding
    for got, want in zip(rank_rows(scores, rows, tie_keys(ids)), _old_rank_rows(scores, rows, tie_keys(ids))):
        np.testing.assert_array_equal(got, want)

    run = pairs.assign(rank=pairs.groupby("qid").cumcount() + 1, score=0.0).sort_values(
        ["qid", "rank"], ignore_index=True
    )
    depth = 5
    head_scores = np.round(rng.random(int((run["rank"] <= depth).sum())), 1)  # equal cross-encoder scores
    monkeypatch.setattr(reranker, "cross_encoder_scores", lambda model, pairs, b, m: head_scores)
    texts = dict.fromkeys(run["docid"], "p")
    got = reranker.rerank(run, "unused", dict.fromkeys(run["qid"], "q"), texts, depth, 2, 8)
    pd.testing.assert_frame_equal(got, _old_rerank(run, head_scores, depth))


def test_no_other_module_writes_a_run_line_or_a_precision():
    """Only dr_core/runs.py spells the TREC line or the score precision."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "dr_core"
    pattern = re.compile(r"Q0|:\.6f|SCORE_DECIMALS\s*=|\\t\{rank\}")
    offenders = [
        str(p.relative_to(root))
        for p in root.rglob("*.py")
        if str(p.relative_to(root)) != "runs.py" and pattern.search(p.read_text())
    ]
    assert offenders == []
