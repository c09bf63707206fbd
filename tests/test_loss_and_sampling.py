import math

import numpy as np
import pytest
import torch

from dr_core.loss import info_nce
from dr_core.train import false_negative_mask, lr_lambda, TrainSettings
from dr_core.train_data import Example, GroupSampler, rank_batches, steps_per_epoch


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
