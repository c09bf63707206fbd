import math

import pytest
import torch
from conftest import prepare_tokenized

from dr_core.loss import group_scores, info_nce, listwise_kl, margin_mse
from dr_core.objective import false_negative_mask
from dr_core.train import TrainSettings
from dr_core.train_data import (
    Example,
    GroupDataset,
    GroupSampler,
    keep_scored,
    rank_batches,
    split_validation,
    steps_per_epoch,
)
from dr_core.train_loop import lr_lambda


def test_info_nce_matches_hand_computation():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p = torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.0, 2.0], [1.0, 1.0]])  # groups of 2
    loss = info_nce(q, p, group_size=2, temperature=0.5)
    s = (q @ p.T / 0.5).tolist()
    expected = 0.5 * (
        -s[0][0] + math.log(sum(math.exp(x) for x in s[0])) - s[1][2] + math.log(sum(math.exp(x) for x in s[1]))
    )
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_false_negative_masking_removes_only_other_positives():
    ids = [["q1", "a", "n1"], ["q2", "b", "a"]]
    mask = false_negative_mask(ids, {"q1": {"a"}, "q2": {"b", "a"}}, group_size=2)
    # q2's own slot (b, column 2) stays; 'a' in column 0 and 3 is a positive of q2 -> masked.
    assert mask.tolist() == [[False, False, False, True], [True, False, False, True]]
    q = torch.randn(2, 4)
    p = torch.randn(4, 4)
    masked = info_nce(q, p, 2, 1.0, mask)
    scores = q @ p.T
    expected = torch.nn.functional.cross_entropy(scores.masked_fill(mask, -1e30), torch.tensor([0, 2]))
    assert masked.item() == pytest.approx(expected.item(), rel=1e-5)


def test_sampler_is_deterministic_and_keeps_groups_valid():
    examples = [Example(f"q{i}", [f"p{i}"], [f"n{i}_{j}" for j in range(i)]) for i in range(5)]
    s = GroupSampler(examples, num_passages=100, group_size=3, seed=1)
    assert (s.order(0) == GroupSampler(examples, 100, 3, 1).order(0)).all()
    assert sorted(s.order(3)) == list(range(5)) and (s.order(0) != s.order(1)).any()
    for i, ex in enumerate(examples):
        qid, group = s.draw(2, i)
        assert qid == ex.qid and group[0] == ex.positives[0] and len(group) == 3
        if ex.negatives:
            assert set(group[1:]) <= set(ex.negatives)
            if len(ex.negatives) >= 2:
                assert len(set(group[1:])) == 2  # without replacement when there are enough
        else:
            assert all(isinstance(x, int) for x in group[1:])  # random corpus rows
        assert s.draw(2, i) == (qid, group)


@pytest.mark.parametrize("n, batch, world", [(10, 4, 1), (10, 4, 2), (9, 3, 3), (7, 4, 2)])
def test_rank_batches_cover_each_item_once(n, batch, world):
    seen = sorted(i for r in range(world) for b in rank_batches(n, batch, r, world) for i in b)
    assert seen == list(range(n))
    assert steps_per_epoch(n, batch, world) == math.ceil(n / batch)
    # resuming at step 1 skips exactly the first global batch
    later = sorted(i for r in range(world) for b in rank_batches(n, batch, r, world, start_step=1) for i in b)
    assert later == list(range(batch, n))


def test_rank_batches_drop_a_final_batch_too_small_to_split():
    assert rank_batches(5, 4, 0, 2) == [[0, 1]]
    assert rank_batches(5, 4, 1, 2) == [[2, 3]]


def test_schedules():
    s = TrainSettings(warmup_steps=2, schedule="linear")
    f = lr_lambda(s, 10)
    assert [round(f(i), 3) for i in (0, 1, 2, 6, 10)] == [0.5, 1.0, 1.0, 0.5, 0.0]
    g = lr_lambda(TrainSettings(warmup_ratio=0.0, schedule="constant"), 10)
    assert g(0) == g(9) == 1.0
    with pytest.raises(ValueError, match="train.schedule"):
        TrainSettings(schedule="cosine")


def test_group_scores_and_margin_mse_by_hand():
    q = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    p = torch.tensor([[2.0, 1.0], [1.0, 1.0], [0.0, 3.0], [3.0, 0.0], [1.0, 1.0], [0.0, 0.0]])  # groups of 3
    s = group_scores(q, p, 3)
    assert s.tolist() == [[2.0, 1.0, 0.0], [0.0, 2.0, 0.0]]
    t = torch.tensor([[5.0, 4.0, 1.0], [1.0, 3.0, 0.0]])
    # student margins [1, 2], [-2, 0]; teacher margins [1, 4], [-2, 1]
    assert margin_mse(s, t).item() == pytest.approx((0 + 4 + 0 + 1) / 4)
    with pytest.raises(ValueError, match="at least one negative"):
        margin_mse(s[:, :1], t[:, :1])


def test_listwise_kl_by_hand_and_zero_at_the_teacher():
    s = torch.tensor([[1.0, 0.0, -1.0]])
    t = torch.tensor([[4.0, 2.0, 2.0]])
    ps = torch.softmax(s / 0.5, -1)[0]
    pt = torch.softmax(t / 2.0, -1)[0]
    expected = sum(float(pt[j] * (pt[j].log() - ps[j].log())) for j in range(3))
    assert listwise_kl(s, t, 0.5, 2.0).item() == pytest.approx(expected, rel=1e-5)
    assert listwise_kl(t, t * 3, 1.0, 3.0).item() == pytest.approx(0.0, abs=1e-6)


def _examples(n=10, negs=6):
    return [Example(f"q{i}", [f"p{i}"], [f"n{i}_{j}" for j in range(negs)]) for i in range(n)]


def test_validation_split_is_fixed_by_the_seed_and_disjoint():
    ex = _examples()
    train, val = split_validation(ex, 3, seed=5)
    assert len(val) == 3 and len(train) == 7
    assert {e.qid for e in train} | {e.qid for e in val} == {e.qid for e in ex}
    assert [e.qid for e in split_validation(ex, 3, seed=5)[1]] == [e.qid for e in val]
    assert [e.qid for e in split_validation(ex, 3, seed=6)[1]] != [e.qid for e in val]
    assert split_validation(ex, 0, 5) == (ex, [])
    with pytest.raises(ValueError, match="leave none"):
        split_validation(ex, 10, 5)


def test_keep_scored_drops_unscored_passages_and_queries():
    ex = [Example("a", ["p1", "p2"], ["n1", "n2"]), Example("b", ["p3"], ["n3"]), Example("c", ["p4"], [])]
    scores = {"a": {"p2": 1.0, "n2": 0.0, "n1": 0.5}, "b": {"p3": 1.0}, "c": {"p4": 2.0}}
    kept = keep_scored(ex, scores, need_negatives=True)
    assert kept == [Example("a", ["p2"], ["n1", "n2"])]
    assert [e.qid for e in keep_scored(ex, scores, need_negatives=False)] == ["a", "b", "c"]


def test_negatives_rank_window(train_store):
    from dr_core.train_data import build_examples

    qrels, queries, corpus = train_store
    negs = {"q1": ["1007", "1014", "1021", "1028", "1035"]}  # 1014 is a positive of q1
    ex = {e.qid: e for e in build_examples(qrels, negs, queries, corpus, skip_top=1, topk=4)}
    assert ex["q1"].negatives == ["1021", "1028"]  # ranks 2-4, positive 1014 removed
    assert {e.qid: e for e in build_examples(qrels, negs, queries, corpus, topk=2)}["q1"].negatives == ["1007"]
    with pytest.raises(ValueError, match="window"):
        build_examples(qrels, negs, queries, corpus, skip_top=3, topk=3)


@pytest.fixture()
def train_store(tiny_bert, tmp_path):
    import pandas as pd

    from dr_core.tokenization import TokenStore

    prepare_tokenized(tiny_bert, tmp_path, "{title} {text}")
    return (
        pd.read_parquet(tmp_path / "qrels.parquet"),
        TokenStore(tmp_path / "tq.parquet"),
        TokenStore(tmp_path / "tc.parquet"),
    )


def _batches(dataset, epoch, workers):
    dataset.set_epoch(epoch)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_sampler=rank_batches(len(dataset), 3, 0, 1),
        collate_fn=lambda items: [i for *_, i in items],
        num_workers=workers,
    )
    return list(loader)


def test_each_query_once_per_epoch_with_any_number_of_workers(train_store):
    from dr_core.train_data import build_examples

    qrels, queries, corpus = train_store
    examples = build_examples(qrels, {"q1": ["1007", "1021", "1028"], "q3": ["1021"]}, queries, corpus)
    dataset = GroupDataset(GroupSampler(examples, len(corpus), 3, seed=9), queries, corpus)
    for epoch in (0, 1):
        serial, parallel = _batches(dataset, epoch, 0), _batches(dataset, epoch, 2)
        assert serial == parallel  # the same groups in the same batches
        qids = [row[0] for batch in serial for row in batch]
        assert sorted(qids) == sorted(e.qid for e in examples)  # every query exactly once
    assert _batches(dataset, 0, 0) != _batches(dataset, 1, 0)
