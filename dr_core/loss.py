"""Contrastive loss over in-batch and hard negatives."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def info_nce(
    q: torch.Tensor,
    p: torch.Tensor,
    group_size: int,
    temperature: float = 1.0,
    false_negatives: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean InfoNCE: query i's positive is passage i*group_size; every other passage is a negative.

    q: [B, D] queries; p: [B*G, D] passages, grouped per query (positive first, then its hard negatives).
    false_negatives: optional bool [B, B*G], True where a passage is relevant to query i but is not its
    target (it is then left out of the softmax instead of being pushed away).
    """
    if p.shape[0] != q.shape[0] * group_size:
        raise ValueError(f"{p.shape[0]} passages for {q.shape[0]} queries x group size {group_size}")
    scores = q @ p.T / temperature  # [B, B*G]
    if false_negatives is not None:
        scores = scores.masked_fill(false_negatives, torch.finfo(scores.dtype).min)
    targets = torch.arange(q.shape[0], device=q.device) * group_size
    return F.cross_entropy(scores, targets)
