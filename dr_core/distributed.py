"""Process-group helpers for multi-process training (torchrun): rank info and a gradient-keeping all-gather."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_world(device: torch.device) -> World:
    """Join the process group torchrun describes (WORLD_SIZE > 1): NCCL on CUDA, gloo on CPU."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return World(dist.get_rank(), dist.get_world_size())


def gather_with_grad(local: torch.Tensor, world: World) -> torch.Tensor:
    """Concatenate every rank's rows in rank order; this rank's slice is `local` itself and keeps its gradient.

    Ranks may hold different numbers of rows. Other ranks' rows carry no gradient: each rank computes the
    loss of the whole global batch, and the gradient reaching its own rows is exact; DDP's mean over ranks
    then needs the loss multiplied by the world size (see `train.py`).
    """
    if world.size == 1:
        return local
    sizes = [torch.zeros(1, dtype=torch.long, device=local.device) for _ in range(world.size)]
    dist.all_gather(sizes, torch.tensor([local.shape[0]], device=local.device))
    sizes_ = [int(s.item()) for s in sizes]
    width = max(sizes_)
    padded = torch.zeros((width, *local.shape[1:]), dtype=local.dtype, device=local.device)
    padded[: local.shape[0]] = local.detach()
    parts = [torch.empty_like(padded) for _ in range(world.size)]
    dist.all_gather(parts, padded)
    parts = [p[:n] for p, n in zip(parts, sizes_)]
    parts[world.rank] = local
    return torch.cat(parts, dim=0)


def finish_world(world: World) -> None:
    """Wait for every rank (rank 0 may still be writing the model), then leave the process group."""
    if world.size > 1 and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
