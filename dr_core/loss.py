"""Training losses: contrastive InfoNCE over in-batch and hard negatives, and two distillation losses.

Shapes: B queries, G passages per query (its positive first, then its hard negatives), D embedding size.
The distillation losses compare each query's G student scores with a teacher's scores of the same passages.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def info_nce(
    q: torch.Tensor,
    p: torch.Tensor,
    group_size: int,
    temperature: float = 1.0,
    false_negatives: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """InfoNCE (mean, or per query with reduction='none'): query i's positive is passage i*group_size; every
    other passage is a negative.

    q: [B, D] queries; p: [B*G, D] passages, grouped per query (positive first, then its hard negatives).
    false_negatives: optional bool [B, B*G], True where a passage is relevant to query i but is not its
    target (it is then left out of the softmax instead of being pushed away).
    """
    _check_groups(q, p, group_size)
    scores = q @ p.T / temperature  # [B, B*G]
    if false_negatives is not None:
        scores = scores.masked_fill(false_negatives, torch.finfo(scores.dtype).min)
    targets = torch.arange(q.shape[0], device=q.device) * group_size
    return F.cross_entropy(scores, targets, reduction=reduction)


def group_scores(q: torch.Tensor, p: torch.Tensor, group_size: int) -> torch.Tensor:
    """[B, G]: each query's scores of its own group (no in-batch passages)."""
    _check_groups(q, p, group_size)
    return torch.einsum("bd,bgd->bg", q, p.view(q.shape[0], group_size, -1))


def margin_mse(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Margin-MSE (Hofstätter et al.): MSE between student and teacher margins s(q, pos) - s(q, neg_j).

    student, teacher: [B, G], column 0 the positive. The mean runs over the B * (G-1) pairs.
    """
    if student.shape[1] < 2:
        raise ValueError("margin_mse needs at least one negative per query (group_size >= 2)")
    s_margin = student[:, :1] - student[:, 1:]  # [B, G-1]
    t_margin = teacher[:, :1] - teacher[:, 1:]
    return F.mse_loss(s_margin, t_margin)


def listwise_kl(
    student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0, teacher_temperature: float = 1.0
) -> torch.Tensor:
    """KL(teacher || student) over each query's group, averaged over queries.

    student, teacher: [B, G] raw scores; the student distribution is softmax(student / temperature),
    the teacher's softmax(teacher / teacher_temperature).
    """
    log_s = F.log_softmax(student / temperature, dim=-1)
    log_t = F.log_softmax(teacher / teacher_temperature, dim=-1)
    return F.kl_div(log_s, log_t, reduction="batchmean", log_target=True)


def _check_groups(q: torch.Tensor, p: torch.Tensor, group_size: int) -> None:
    if p.shape[0] != q.shape[0] * group_size:
        raise ValueError(f"{p.shape[0]} passages for {q.shape[0]} queries x group size {group_size}")
