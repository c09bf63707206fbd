"""Optimisers: AdamW (torch) and LAMB (You et al., 2020, "Large Batch Optimization for Deep Learning")."""

from __future__ import annotations

from collections.abc import Iterable

import torch

OPTIMIZERS = ("adamw", "lamb")


class Lamb(torch.optim.Optimizer):
    """LAMB: the Adam update (bias-corrected, plus decoupled weight decay) rescaled per tensor by the trust
    ratio ||w|| / ||update|| (1 when either norm is 0).

    Per step t and tensor w with gradient g:
        m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
        u = (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps) + weight_decay * w
        w = w - lr * (||w|| / ||u||) * u
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
    ) -> None:
        if lr <= 0 or eps <= 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1) or weight_decay < 0:
            raise ValueError(f"invalid LAMB hyperparameters lr={lr} betas={betas} eps={eps} wd={weight_decay}")
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for w in group["params"]:
                if w.grad is not None:
                    self._update(w, group)
        return loss

    def _update(self, w: torch.Tensor, group: dict) -> None:
        b1, b2 = group["betas"]
        state = self.state[w]
        if not state:
            state["step"] = 0
            state["m"] = torch.zeros_like(w, memory_format=torch.preserve_format)
            state["v"] = torch.zeros_like(w, memory_format=torch.preserve_format)
        state["step"] += 1
        t, m, v = state["step"], state["m"], state["v"]
        m.mul_(b1).add_(w.grad, alpha=1 - b1)
        v.mul_(b2).addcmul_(w.grad, w.grad, value=1 - b2)
        update = (m / (1 - b1**t)) / ((v / (1 - b2**t)).sqrt() + group["eps"])
        if group["weight_decay"]:
            update.add_(w, alpha=group["weight_decay"])
        w_norm, u_norm = w.norm(), update.norm()
        trust = torch.where((w_norm > 0) & (u_norm > 0), w_norm / u_norm, torch.ones_like(w_norm))
        w.sub_(update * (group["lr"] * trust))


def make_optimizer(name: str, model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW or LAMB over the trainable parameters; biases and LayerNorm weights (1-d) get no weight decay."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim > 1], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
    ]
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    if name == "lamb":
        return Lamb(groups, lr=lr)
    raise ValueError(f"train.optimizer must be one of {OPTIMIZERS}, not {name!r}")
