"""Hybrid retrieval (BM25 fused with a dense run), weight tuning, and BM25 + mined negatives, on hand-built cases."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from dr_core.cli import main
from dr_core.data.formats import read_negatives
from dr_core.fusion import fuse, tune_weight, weight_grid
from dr_core.negatives import mine, mix_negatives
from dr_core.runs import read_trec, write_trec_frame


def run(rows: list[tuple[str, str, float]]) -> pd.DataFrame:
    """A run from (qid, docid, score) rows listed best first per query."""
    df = pd.DataFrame(rows, columns=["qid", "docid", "score"])
    df["rank"] = df.groupby("qid").cumcount() + 1
    return df[["qid", "docid", "rank", "score"]]


# q1: d3 only in BM25, d4 only in the dense run. q2: a and b swap places, so equal weights tie them.
BM25 = run([("q1", "d1", 10.0), ("q1", "d2", 6.0), ("q1", "d3", 2.0), ("q2", "a", 3.0), ("q2", "b", 1.0)])
DENSE = run([("q1", "d2", 0.9), ("q1", "d4", 0.5), ("q1", "d1", 0.1), ("q2", "b", 2.0), ("q2", "a", 1.0)])


def as_rows(fused: pd.DataFrame) -> list[tuple[str, str, int, float]]:
    return list(fused.itertuples(index=False, name=None))


def test_convex_fusion_matches_the_hand_computed_case():
    # Min-max: BM25 d1 1, d2 0.5, d3 0; dense d2 1, d4 0.5, d1 0; a missing document counts 0.
    fused = fuse(BM25, DENSE, "convex", depth=100, weight=0.5)
    assert as_rows(fused) == [
        ("q1", "d2", 1, 0.75),  # 0.5 * 1 + 0.5 * 0.5
        ("q1", "d1", 2, 0.5),  # 0.5 * 0 + 0.5 * 1
        ("q1", "d4", 3, 0.25),  # 0.5 * 0.5 + 0.5 * (missing: 0)
        ("q1", "d3", 4, 0.0),
        ("q2", "b", 1, 0.5),  # tie with a: doc id decides, descending as trec_eval ranks ties
        ("q2", "a", 2, 0.5),
    ]
    assert as_rows(fuse(BM25, DENSE, "convex", depth=100, weight=1.0))[:3] == [
        ("q1", "d2", 1, 1.0),
        ("q1", "d4", 2, 0.5),
        ("q1", "d3", 3, 0.0),  # d1 and d3 tie at 0: doc id decides
    ]


def test_rrf_matches_the_hand_computed_case():
    fused = fuse(BM25, DENSE, "rrf", depth=100, rrf_k=60)
    expected = {
        ("q1", "d2"): 1 / 62 + 1 / 61,
        ("q1", "d1"): 1 / 61 + 1 / 63,
        ("q1", "d4"): 1 / 62,  # no term from BM25, which missed it
        ("q1", "d3"): 1 / 63,
        ("q2", "b"): 1 / 62 + 1 / 61,
        ("q2", "a"): 1 / 61 + 1 / 62,
    }
    assert [(q, d) for q, d, _, _ in as_rows(fused)] == list(expected)  # b before a: the tie goes by doc id
    assert fused["score"].tolist() == pytest.approx(list(expected.values()), abs=1e-6)
    assert fused["rank"].tolist() == [1, 2, 3, 4, 1, 2]


def test_both_runs_are_cut_to_the_depth_before_normalising():
    # Depth 2: BM25 keeps d1 (1), d2 (0); dense keeps d2 (1), d4 (0). d1 and d2 tie at 0.5; d3 is gone.
    fused = fuse(BM25, DENSE, "convex", depth=2, weight=0.5)
    assert as_rows(fused[fused["qid"] == "q1"]) == [("q1", "d2", 1, 0.5), ("q1", "d1", 2, 0.5), ("q1", "d4", 3, 0.0)]
    assert set(fuse(BM25, DENSE, "rrf", depth=1)["docid"]) == {"d1", "d2", "a", "b"}


@pytest.mark.parametrize("weight", [None, -0.1, 1.5])
def test_convex_weight_outside_the_unit_interval_is_refused(weight):
    with pytest.raises(ValueError, match=r"hybrid.weight must be in \[0, 1\]"):
        fuse(BM25, DENSE, "convex", depth=10, weight=weight)


def test_tuning_picks_the_best_weight_on_the_tune_split_only():
    # q1's relevant d4 scores 0.5 w; d1 1 - w; d2 0.5 + 0.5 w: d4 reaches rank 2 once w > 2/3, first at 0.70,
    # and stays there up to 1 (a tie that the smaller weight wins).
    q1 = pd.DataFrame({"qid": ["q1"], "docid": ["d4"], "rel": [1]})
    result = tune_weight(BM25, DENSE, q1, depth=100)
    assert result["weight"] == 0.7 and result["queries"] == 1
    grid = {g["weight"]: g["ndcg@10"] for g in result["grid"]}
    assert list(grid) == weight_grid().tolist() and len(grid) == 21
    assert grid[0.65] == pytest.approx(0.5) and grid[0.7] == pytest.approx(1 / 1.5849625) == grid[1.0]
    # Another split's queries give another weight: q2's relevant b (score w, a's 1 - w) leads from w = 0.5,
    # where it ties with a and goes first as evaluation ranks ties (doc id descending).
    q2 = pd.DataFrame({"qid": ["q2"], "docid": ["b"], "rel": [1]})
    assert tune_weight(BM25, DENSE, q2, depth=100)["weight"] == 0.5


def test_fuse_and_tune_steps_write_the_run_and_the_weight_file(tmp_path):
    for name, frame in (("bm25", BM25), ("dense", DENSE)):
        write_trec_frame(tmp_path / f"{name}.trec", frame, tag=name)
    pd.DataFrame({"qid": ["q1"], "docid": ["d4"], "rel": [1]}).to_parquet(tmp_path / "qrels.parquet")
    runs = ["--bm25", str(tmp_path / "bm25.trec"), "--dense", str(tmp_path / "dense.trec")]
    weight = tmp_path / "fusion.json"
    assert main(["fusion-weight", *runs, "--qrels", str(tmp_path / "qrels.parquet"), "--out", str(weight)]) == 0
    assert json.loads(weight.read_text())["weight"] == 0.7
    out = tmp_path / "fused.trec"
    args = ["fuse", *runs, "--method", "convex", "--weight-file", str(weight), "--tag", "hy", "--out", str(out)]
    assert main(args) == 0
    fused = read_trec(out)
    assert fused[fused["qid"] == "q1"]["docid"].tolist() == ["d2", "d4", "d1", "d3"]
    assert out.read_text().splitlines()[0] == "q1 Q0 d2 1 0.850000 hy"


MINED = {"q1": ["m1", "m2", "m3", "m4", "m5", "x"], "q2": ["m9"]}
FROM_BM25 = {"q1": ["b1", "x", "b2", "b3"], "q3": ["b7", "b8"]}


def test_mixing_draws_each_share_from_its_pool_without_duplicates():
    mixed = mix_negatives(MINED, FROM_BM25, n=4, bm25_fraction=0.5, seed=3)
    q1 = mixed["q1"]
    assert len(q1) == len(set(q1)) == 4
    assert set(q1[:2]) <= set(MINED["q1"]) and set(q1[2:]) <= set(FROM_BM25["q1"]) - set(q1[:2])
    assert mixed["q2"] == ["m9"] and mixed["q3"] == ["b7", "b8"]  # a pool smaller than its share gives fewer
    assert mixed == mix_negatives(MINED, FROM_BM25, n=4, bm25_fraction=0.5, seed=3)  # seeded
    # With a shared document drawn from the mined pool, the BM25 share never repeats it.
    for seed in range(20):
        q1 = mix_negatives(MINED, FROM_BM25, n=6, bm25_fraction=0.5, seed=seed)["q1"]
        assert len(q1) == len(set(q1))


def test_mixing_fraction_zero_and_one_are_the_plain_samples():
    positives = pd.DataFrame({"qid": ["q1"], "docid": ["p"], "rel": [1]})
    dense = run([("q1", d, 1.0 - i / 10) for i, d in enumerate(["p", "m1", "m2", "m3", "m4", "m5"])])
    bm25 = run([("q1", d, 1.0 - i / 10) for i, d in enumerate(["b1", "p", "b2", "b3", "b4", "m1"])])
    mined, from_bm25 = mine(dense, positives, 1, 6, 0, 7), mine(bm25, positives, 1, 6, 0, 7)
    assert "p" not in mined["q1"] and "p" not in from_bm25["q1"]
    assert mix_negatives(mined, from_bm25, 3, 0.0, 7) == mine(dense, positives, 1, 6, 3, 7)
    assert mix_negatives(mined, from_bm25, 3, 1.0, 7) == mine(bm25, positives, 1, 6, 3, 7)


@pytest.mark.parametrize("fraction", [-0.1, 1.2])
def test_mixing_fraction_outside_the_unit_interval_is_refused(fraction):
    with pytest.raises(ValueError, match="negatives.mine.bm25_fraction"):
        mix_negatives(MINED, FROM_BM25, n=4, bm25_fraction=fraction, seed=0)


def test_mine_step_mixes_bm25_negatives_and_never_keeps_positives(tmp_path):
    dense = run([("q1", f"m{i}", 1.0 - i / 100) for i in range(20)] + [("q1", "p", 0.0)])
    bm25 = run([("q1", "p", 9.0)] + [("q1", f"b{i}", 8.0 - i / 100) for i in range(20)])
    write_trec_frame(tmp_path / "dense.trec", dense, tag="d")
    write_trec_frame(tmp_path / "bm25.trec", bm25, tag="b")
    pd.DataFrame({"qid": ["q1"], "docid": ["p"], "rel": [1]}).to_parquet(tmp_path / "qrels.parquet")
    out = tmp_path / "negs.tsv"
    args = ["mine", "--run", str(tmp_path / "dense.trec"), "--qrels", str(tmp_path / "qrels.parquet")]
    args += ["--out", str(out), "--rank-min", "1", "--rank-max", "21", "--n", "10", "--seed", "1"]
    args += ["--bm25-run", str(tmp_path / "bm25.trec"), "--bm25-fraction", "0.3", "--bm25-rank-max", "21"]
    assert main(args) == 0
    negs = read_negatives(out)["q1"]
    assert len(negs) == len(set(negs)) == 10 and "p" not in negs
    assert sum(d.startswith("b") for d in negs) == 3
