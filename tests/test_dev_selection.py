"""Choices on dev: the carved dev split, the selected round, the stopping rule, the false-negative filter, and
bad dev settings refused (the workflow that wires them runs in tests/test_dev_sweep_workflow.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_workflow import snakemake, write_config

from dr_core.bm25 import bm25_pair_scores, bm25_search
from dr_core.data.dev_split import carve, dev_queries
from dr_core.negatives import mine, near_positive
from dr_core.positive_scores import weakest_positive, write_scores
from dr_core.selection import keep_training, select_round


def _qrels(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {"qid": [f"q{i}" for i in range(n) for _ in (0, 1)], "docid": [f"d{i}" for i in range(2 * n)], "rel": 1}
    )


def test_dev_carve_is_seeded_disjoint_and_keeps_each_querys_judgements_whole():
    qrels = _qrels(20)
    dev, rest = carve(qrels, 0.25, None, 3, "dev"), carve(qrels, 0.25, None, 3, "train")
    assert dev["qid"].nunique() == 5 and rest["qid"].nunique() == 15
    assert not set(dev["qid"]) & set(rest["qid"]) and len(dev) + len(rest) == len(qrels)
    assert set(dev["qid"]) == dev_queries(qrels["qid"][::-1].tolist(), None, 5, 3)  # same draw, any order, by count
    assert set(dev["qid"]) != set(carve(qrels, 0.25, None, 4, "dev")["qid"])  # the seed draws


@pytest.mark.parametrize(
    ("share", "count", "key"),
    [
        (0.01, None, "data.dev.share"),
        (0.99, None, "data.dev.share"),
        (None, 20, "data.dev.count"),
        (None, 0, "data.dev.count"),
    ],
)
def test_a_dev_split_that_leaves_either_side_empty_is_refused(share, count, key):
    with pytest.raises(ValueError, match=key):
        dev_queries([f"q{i}" for i in range(20)], share, count, 0)


def test_selected_is_the_argmax_and_ties_go_to_the_earlier_round():
    assert select_round([0.30, 0.35, 0.33]) == 1
    assert select_round([0.30, 0.35, 0.35, 0.34]) == 1
    assert select_round([0.40, 0.35]) == 0


@pytest.mark.parametrize(
    ("values", "patience", "min_delta", "expected"),
    [
        ([0.3], 1, 0.0, True),  # the base model always leads to round 1
        ([0.3, 0.35], 1, 0.0, True),  # round 1 improved
        ([0.3, 0.35, 0.34], 1, 0.0, False),  # round 2 did not
        ([0.3, 0.35, 0.34], 2, 0.0, True),  # ... but round 1, within the last 2, did
        ([0.3, 0.35, 0.34, 0.345], 2, 0.0, False),  # neither of the last 2 beat round 1's 0.35
        ([0.3, 0.29], 2, 0.0, True),  # one round without improvement, patience 2
        ([0.3, 0.29, 0.28], 2, 0.0, False),  # two
        ([0.3, 0.35], 1, 0.05, False),  # +0.05 is not more than min_delta 0.05
        ([0.3, 0.4, 0.5], 1, 0.0, False),  # max rounds (2) reached
    ],
)
def test_the_stopping_rule(values, patience, min_delta, expected):
    assert keep_training(values, 2 if len(values) == 3 and values[-1] == 0.5 else 5, patience, min_delta) is expected


def test_the_filter_drops_candidates_near_the_weakest_positive_including_one_outside_the_depth(tmp_path):
    # q1's positives: d1 ranked first (score 0.9) and d9, outside the 5-deep run, scored 0.5 by the same model
    scores = pd.DataFrame({"qid": ["q1", "q1", "q2"], "docid": ["d1", "d9", "e1"], "score": [0.9, 0.5, 0.8]})
    write_scores(scores, tmp_path / "pos.tsv")
    weakest = weakest_positive(tmp_path / "pos.tsv")
    assert weakest == {"q1": pytest.approx(0.5), "q2": pytest.approx(0.8)}
    run = [
        ("q1", ["d1", "d2", "d3", "d4", "d5"], [1, 2, 3, 4, 5], [0.9, 0.6, 0.48, 0.46, 0.2]),
        ("q2", ["e1", "e2", "e3"], [1, 2, 3], [0.8, 0.79, 0.5]),
    ]

    def drops(relative=None, margin=None):
        return {q: near_positive(d, sc, weakest[q], relative, margin) for q, d, _, sc in run}

    # relative 0.95: q1 drops > 0.475 (d1 the positive, d2, d3), q2 drops > 0.76 (e1, e2)
    assert drops(relative=0.95) == {"q1": {"d1", "d2", "d3"}, "q2": {"e1", "e2"}}
    # margin 0.05: q1 drops > 0.45 (d1..d4); both: the stricter threshold (the lower one) wins
    assert drops(margin=0.05)["q1"] == {"d1", "d2", "d3", "d4"}
    assert drops(relative=0.95, margin=0.01)["q1"] == {"d1", "d2", "d3"}
    drop = drops(relative=0.95)
    qrels = pd.DataFrame({"qid": ["q1", "q1", "q2"], "docid": ["d1", "d9", "e1"], "rel": 1})
    frame = pd.DataFrame([(q, d, r) for q, ds, rs, _ in run for d, r in zip(ds, rs)], columns=["qid", "docid", "rank"])
    assert mine(frame, qrels, 1, 5, 0, 0, drop) == {"q1": ["d4", "d5"], "q2": ["e3"]}
    assert mine(frame, qrels, 1, 5, 0, 0) == {"q1": ["d2", "d3", "d4", "d5"], "q2": ["e2", "e3"]}
    with pytest.raises(ValueError, match="relative"):
        drops(relative=1.5)


def test_bm25_scores_of_given_pairs_are_the_scores_bm25_ranks_with():
    corpus = pd.DataFrame(
        {"id": ["a", "b", "c", "d"], "title": ["", "", "", ""],
         "text": ["cats purr loudly", "dogs bark at cats", "the stock market fell", "cats and dogs and cats"]}
    )  # fmt: skip
    queries = pd.DataFrame({"qid": ["q"], "text": ["cats dogs"]})
    ids, scores = bm25_search(corpus, queries, 4)
    pairs = pd.DataFrame({"qid": ["q"] * 4, "docid": list(ids[0])})
    np.testing.assert_allclose(bm25_pair_scores(corpus, queries, pairs), scores[0], rtol=1e-6)
    assert bm25_pair_scores(corpus, queries, pd.DataFrame({"qid": ["q"], "docid": ["c"]}))[0] == 0  # no shared word


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"data.dev": {"share": 1.0}}, "On instance['data']['dev']['share']"),
        ({"data.dev": {"share": 0.2, "count": 3}}, "data.dev.share and data.dev.count are both set"),
        ({"data.dev": {"split": "test"}}, "data.dev.split 'test' of tiny is also an evaluation target"),
        ({"ance.rounds": {"max": 3, "patience": 0}, "data.dev": {"count": 4}}, "On instance['ance']['rounds']"),
        ({"ance.rounds": {"max": 0}, "data.dev": {"count": 4}}, "On instance['ance']['rounds']"),
        ({"ance.rounds": {"max": 3}}, "stops on the dev metric; set data.dev"),
        ({"negatives.mine": {"filter": {"relative": 1.5}}}, "On instance['negatives']['mine']['filter']['relative']"),
        ({"merge": {"rounds": [1], "alpha": 1.5}}, "On instance['merge']['alpha']"),
        ({"merge": {"rounds": ["selected"]}}, "the system `selected` (hybrid.rounds, merge.rounds) is chosen on dev"),
        ({"eval.baselines": ["bm25", "round7"]}, "config: eval.baselines has ['round7'], not among"),
    ],
)
def test_bad_dev_settings_are_refused_by_key_before_any_output(tmp_path, changes, message):
    config = str(write_config(tmp_path, **changes))
    proc = snakemake("-n", "--configfile", config, "--directory", str(tmp_path), check=False)
    assert proc.returncode != 0 and message in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()
