import numpy as np
import pandas as pd
import pytest

from dr_core.atomic import atomic_path
from dr_core.data.formats import read_negatives, write_negatives
from dr_core.errors import DataError
from dr_core.evaluate import evaluate
from dr_core.negatives import mine
from dr_core.runs import read_trec, run_to_dict, trec_eval_order, write_trec


def test_trec_round_trip_and_bad_line(tmp_path):
    path = tmp_path / "run.trec"
    write_trec(
        path, ["q1", "q2"], np.array([["a", "b"], ["c", ""]], dtype=object), np.array([[2.0, 1.0], [3.0, 0.0]]), "t"
    )
    assert path.read_text().splitlines() == ["q1 Q0 a 1 2.000000 t", "q1 Q0 b 2 1.000000 t", "q2 Q0 c 1 3.000000 t"]
    run = read_trec(path)
    assert run_to_dict(run) == {"q1": {"a": 2.0, "b": 1.0}, "q2": {"c": 3.0}}
    path.write_text("q1 Q0 a 1 2.0 t\nq1 Q0 b 2\n")
    with pytest.raises(DataError, match="run.trec"):
        read_trec(path)


def _run(rows):
    return pd.DataFrame(rows, columns=["qid", "docid", "rank", "score"])


def test_mine_window_removes_positives_and_is_seeded():
    run = _run([("q1", f"d{i}", i, 10.0 - i) for i in range(1, 11)] + [("q2", "d1", 1, 1.0), ("q3", "x", 1, 1.0)])
    qrels = pd.DataFrame({"qid": ["q1", "q1", "q2"], "docid": ["d3", "d5", "d9"], "rel": [1, 1, 1]})
    negs = mine(run, qrels, rank_min=2, rank_max=8, n=0, seed=1)
    assert negs["q1"] == ["d2", "d4", "d6", "d7", "d8"]
    assert "q2" not in negs and "q3" not in negs  # q2: nothing in the window; q3: not judged
    a = mine(run, qrels, 2, 8, 3, seed=1)["q1"]
    assert len(a) == 3 and a == sorted(a, key=lambda d: int(d[1:])) and set(a) <= set(negs["q1"])
    assert a == mine(run, qrels, 2, 8, 3, seed=1)["q1"]
    assert any(mine(run, qrels, 2, 8, 3, seed=s)["q1"] != a for s in range(2, 8))
    with pytest.raises(ValueError, match="empty"):
        mine(run, qrels, 5, 4, 3, 1)


def test_negatives_file_round_trip_and_errors(tmp_path):
    path = tmp_path / "n.tsv"
    write_negatives({"q1": ["a", "b"], "q2": []}, path)
    assert path.read_text() == "q1\ta,b\n"
    path.write_text("q1\ta,b\r\nq2\tc\n")
    assert read_negatives(path) == {"q1": ["a", "b"], "q2": ["c"]}
    path.write_text("q1\ta\nq2 c\n")
    with pytest.raises(DataError, match=r"n.tsv:2: expected"):
        read_negatives(path)
    path.write_text("q1\ta\nq2\tc\nq1\tb\n")
    assert read_negatives(path) == {"q1": ["a", "b"], "q2": ["c"]}  # a qid on several lines, as the seed writes


def test_metrics_match_hand_computation():
    qrels = pd.DataFrame({"qid": ["q1", "q1", "q2"], "docid": ["a", "c", "x"], "rel": [1, 1, 1]})
    run = {"q1": {"b": 3.0, "a": 2.0, "c": 1.0}}  # q2 missing from the run: counts as zero
    mean, per_query = evaluate(run, qrels, ["ndcg@10", "mrr@10", "recall@100", "map"])
    ndcg_q1 = (1 / np.log2(3) + 1 / np.log2(4)) / (1 + 1 / np.log2(3))
    assert per_query["q1"]["ndcg@10"] == pytest.approx(ndcg_q1)
    assert per_query["q1"]["mrr@10"] == pytest.approx(0.5) and per_query["q2"]["mrr@10"] == 0.0
    assert per_query["q1"]["map"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert mean["recall@100"] == pytest.approx(0.5)
    assert mean["ndcg@10"] == pytest.approx(ndcg_q1 / 2)


def test_mrr_at_10_ignores_hits_below_rank_10():
    qrels = pd.DataFrame({"qid": ["q"], "docid": ["hit"], "rel": [1]})
    run = {"q": {**{f"d{i}": 100.0 - i for i in range(10)}, "hit": 1.0}}
    mean, _ = evaluate(run, qrels, ["mrr@10", "recall@100"])
    assert mean == {"mrr@10": 0.0, "recall@100": 1.0}


def test_a_tie_at_the_cut_off_is_broken_as_trec_eval_breaks_it():
    """Nine better documents, then a and b tied at ranks 10-11: trec_eval ranks b (the larger docid) 10th, so
    MRR@10 and nDCG@10 count b, not a, whatever order the run lists them in."""
    above = {f"x{i}": 10.0 - i for i in range(9)}
    for relevant, expected in (("a", 0.0), ("b", 0.1)):
        qrels = pd.DataFrame({"qid": ["q"], "docid": [relevant], "rel": [1]})
        mean, _ = evaluate({"q": {**above, "a": 1.0, "b": 1.0}}, qrels, ["mrr@10", "ndcg@10", "p@10"])
        assert mean["mrr@10"] == pytest.approx(expected) and mean["p@10"] == pytest.approx(expected)
        assert (mean["ndcg@10"] > 0) == (relevant == "b")


def cranfield_like(seed: int = 0) -> tuple[pd.DataFrame, dict[str, dict[str, float]]]:
    """40 queries over 1,500 docs with 30 judgements each, graded 0-4 (rel-0 rows included, as Cranfield's),
    and a run of 1,200 docs per query that favours higher grades, its scores rounded so ties are common
    (at rank 10 too) and some relevant docs fall below rank 1,000."""
    rng = np.random.default_rng(seed)
    rows, run = [], {}
    for q in range(40):
        judged = rng.choice(1500, size=30, replace=False)
        grades = rng.choice(5, size=30, p=[0.15, 0.2, 0.35, 0.2, 0.1])
        rows += [(f"q{q}", f"d{d}", int(g)) for d, g in zip(judged, grades)]
        boost = dict(zip(judged, grades))
        ranked = rng.permutation(1500)[:1200]
        scores = np.sort(rng.normal(size=1200))[::-1] + np.array([0.5 * boost.get(d, 0) for d in ranked])
        run[f"q{q}"] = {f"d{d}": float(np.round(s, 1)) for d, s in zip(ranked, scores)}
    return pd.DataFrame(rows, columns=["qid", "docid", "rel"]), run


def test_metrics_agree_with_ranx_on_graded_qrels_with_ties():
    """Every metric against an independent implementation (ranx), given the run in trec_eval's order."""
    from ranx import Qrels, Run
    from ranx import evaluate as ranx_evaluate

    qrels, run = cranfield_like()
    assert (qrels["rel"] == 0).any() and qrels["rel"].max() == 4
    top11 = [trec_eval_order(docs)[9:11] for docs in run.values()]
    assert any(a[1] == b[1] for a, b in top11)  # some query has a tie across the rank-10 cut-off
    names = {"ndcg@10": "ndcg@10", "mrr@10": "mrr@10", "recall@100": "recall@100", "recall@1000": "recall@1000",
             "map": "map", "ndcg@100": "ndcg@100", "recall@10": "recall@10", "p@10": "precision@10"}  # fmt: skip
    ours, _ = evaluate(run, qrels, list(names))
    assert 0 < ours["recall@1000"] < 1
    judged: dict[str, dict[str, int]] = {}
    for qid, docid, rel in qrels.itertuples(index=False):
        judged.setdefault(qid, {})[docid] = rel
    strict = {q: {d: -float(rank) for rank, (d, _) in enumerate(trec_eval_order(docs))} for q, docs in run.items()}
    theirs = ranx_evaluate(Qrels(judged), Run(strict), list(names.values()), make_comparable=True)
    for name, ranx_name in names.items():
        assert ours[name] == pytest.approx(float(theirs[ranx_name]), abs=1e-9), name


def test_atomic_path_leaves_nothing_on_error(tmp_path):
    dest = tmp_path / "out.txt"
    with pytest.raises(RuntimeError):
        with atomic_path(dest) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(tmp_path / "d", is_dir=True) as tmp:
        (tmp / "f").write_text("x")
    assert (tmp_path / "d" / "f").read_text() == "x"
