"""Cached contrastive loss (GradCache, Gao et al. 2021; sentence-transformers' CachedMultipleNegativesRankingLoss):
the batch's loss with only `chunk` query groups' activations in memory at a time.

1. Embed the batch chunk by chunk without a graph, recording each chunk's random state (dropout).
2. Compute the loss on those embeddings as leaves (cross-device gathering included) and backpropagate it to the
   embeddings only: their gradients are the cache.
3. When the caller backpropagates the returned loss, re-embed each chunk with a graph under its recorded random
   state and backpropagate the cached gradient (times the caller's factor: loss scaling, accumulation) into the
   parameters. Under DDP every chunk but the last skips gradient synchronisation.

Peak activation memory is one chunk's forward graph (chunk queries and their chunk x group passages) instead of
the batch's; the price is a second forward pass (about a third more compute).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch

Batch = dict[str, torch.Tensor]
Forward = Callable[[torch.nn.Module, Batch, Batch], tuple[torch.Tensor, torch.Tensor]]


def chunk_rows(batch: Batch, start: int, end: int) -> Batch:
    """Rows [start, end) of a padded batch, cut to their own longest row (less padding, same embeddings)."""
    rows = {k: v[start:end] for k, v in batch.items()}
    width = int(rows["attention_mask"].sum(1).max())
    return {k: v[:, :width] for k, v in rows.items()}


class RandomState:
    """The CPU (and current CUDA device's) random state, to replay a chunk's dropout masks exactly."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.cpu_state = torch.get_rng_state()
        self.cuda_state = torch.cuda.get_rng_state(device) if self.cuda else None
        self.device = device

    @contextlib.contextmanager
    def replay(self):
        devices = [self.device] if self.cuda else []
        with torch.random.fork_rng(devices=devices):
            torch.set_rng_state(self.cpu_state)
            if self.cuda:
                torch.cuda.set_rng_state(self.cuda_state, self.device)
            yield


def _chunks(queries: Batch, passages: Batch, chunk: int) -> list[tuple[Batch, Batch]]:
    """(queries, their passages) of each run of `chunk` groups; passages are stored group after group."""
    n = queries["input_ids"].shape[0]
    group = passages["input_ids"].shape[0] // n
    return [
        (chunk_rows(queries, i, min(i + chunk, n)), chunk_rows(passages, i * group, min(i + chunk, n) * group))
        for i in range(0, n, chunk)
    ]


def cached_loss(
    net: torch.nn.Module,
    queries: Batch,
    passages: Batch,
    chunk: int,
    forward: Forward,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """The loss of the batch (a leaf); its backward fills the parameters' gradients as the uncached loss would."""
    device = queries["input_ids"].device
    chunks = _chunks(queries, passages, chunk)
    states, q_parts, p_parts = [], [], []
    with torch.no_grad():
        for q_in, p_in in chunks:
            states.append(RandomState(device))
            q, p = forward(net, q_in, p_in)
            q_parts.append(q)
            p_parts.append(p)
    q = torch.cat(q_parts).requires_grad_()
    p = torch.cat(p_parts).requires_grad_()
    if not torch.is_grad_enabled():
        return loss_fn(q, p)
    with torch.enable_grad():
        loss = loss_fn(q, p)
        loss.backward()
    q_grads, p_grads = q.grad.split([x.shape[0] for x in q_parts]), p.grad.split([x.shape[0] for x in p_parts])
    out = loss.detach().requires_grad_()

    def replay(grad_output: torch.Tensor) -> None:
        for i, ((q_in, p_in), state) in enumerate(zip(chunks, states)):
            last = i == len(chunks) - 1
            sync = contextlib.nullcontext() if last or not hasattr(net, "no_sync") else net.no_sync()
            with sync, state.replay(), torch.enable_grad():  # hooks run with grad mode off
                q_emb, p_emb = forward(net, q_in, p_in)
                surrogate = (q_emb * q_grads[i]).sum() + (p_emb * p_grads[i]).sum()
                (surrogate * grad_output).backward()

    out.register_hook(replay)
    return out
