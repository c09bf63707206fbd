import math

import pytest
import torch

from dr_core.optim import Lamb, make_optimizer


def test_lamb_first_step_matches_hand_computation():
    w = torch.nn.Parameter(torch.tensor([3.0, 4.0]))  # ||w|| = 5
    w.grad = torch.tensor([0.5, -2.0])
    Lamb([w], lr=0.1, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.01).step()
    # step 1: m_hat = g, v_hat = g^2, so the Adam part is g / (|g| + eps) ~ sign(g)
    u = [0.5 / (0.5 + 1e-6) + 0.01 * 3.0, -2.0 / (2.0 + 1e-6) + 0.01 * 4.0]
    trust = 5.0 / math.hypot(*u)
    expected = [3.0 - 0.1 * trust * u[0], 4.0 - 0.1 * trust * u[1]]
    assert w.tolist() == pytest.approx(expected, rel=1e-6)


def test_lamb_second_step_uses_bias_corrected_moments():
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0, 2.0]))
    opt = Lamb([w], lr=0.05, betas=(0.8, 0.9), eps=1e-8)
    grads = [torch.tensor([1.0, 0.0, -1.0]), torch.tensor([0.5, 1.0, 1.0])]
    m = torch.zeros(3)
    v = torch.zeros(3)
    ref = w.detach().clone()
    for t, g in enumerate(grads, start=1):
        w.grad = g
        opt.step()
        m = 0.8 * m + 0.2 * g
        v = 0.9 * v + 0.1 * g * g
        u = (m / (1 - 0.8**t)) / ((v / (1 - 0.9**t)).sqrt() + 1e-8)
        ref = ref - 0.05 * (ref.norm() / u.norm()) * u
    torch.testing.assert_close(w.detach(), ref, rtol=1e-6, atol=1e-7)


def test_lamb_trust_ratio_is_one_for_zero_weights():
    w = torch.nn.Parameter(torch.zeros(2))
    w.grad = torch.tensor([1.0, -1.0])
    Lamb([w], lr=0.1).step()
    assert w.tolist() == pytest.approx([-0.1, 0.1], rel=1e-5)


def test_make_optimizer_groups_and_names():
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.LayerNorm(2))
    opt = make_optimizer("lamb", model, 1e-3, 0.1)
    assert isinstance(opt, Lamb)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]
    assert len(opt.param_groups[0]["params"]) == 1 and len(opt.param_groups[1]["params"]) == 3
    assert isinstance(make_optimizer("adamw", model, 1e-3, 0.1), torch.optim.AdamW)
    with pytest.raises(ValueError, match="train.optimizer"):
        make_optimizer("sgd", model, 1e-3, 0.1)
