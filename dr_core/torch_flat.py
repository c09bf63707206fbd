"""Exact inner-product search on GPUs with torch: the `Flat` index's vectors sharded over the devices, scores from
matrix products, each shard's top-k merged.

Why not faiss-gpu for the exact index: PyPI's `faiss-gpu-cu12` wheels carry kernels for compute capability 7.0-8.9
only; on an H100/H200 their first search aborts the process ("no kernel image is available"; seen on an H200).
Torch runs wherever CUDA torch runs, needs no second CUDA stack and has no limit on k. Approximate indexes (IVF,
PQ) still go to faiss-gpu (`dr_core.search.to_gpus`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

SCORE_BUDGET = 1 << 28  # score-matrix elements a step (1 GiB of float32): queries x rows per product
COPY_ROWS = 1 << 20  # rows copied to a device at a time


class TorchFlat:
    """Faiss-like (`ntotal`, `d`, `search`) exact inner-product index over `vectors`, split row-wise into one
    contiguous shard per device. With `fp16` the vectors are stored in float16 (half the memory) and each slice
    is widened to float32 before its product, so scores are float32 dot products of the stored values."""

    def __init__(self, vectors: np.ndarray, devices: Sequence[torch.device], fp16: bool = False) -> None:
        if not devices:
            raise ValueError("TorchFlat needs at least one device")
        self.ntotal, self.d = vectors.shape
        dtype = torch.float16 if fp16 else torch.float32
        bounds = np.linspace(0, self.ntotal, len(devices) + 1).astype(np.int64)
        self.shards: list[tuple[int, torch.Tensor]] = []
        for device, lo, hi in zip(devices, bounds[:-1], bounds[1:]):
            block = torch.empty((int(hi - lo), self.d), dtype=dtype, device=device)
            for start in range(int(lo), int(hi), COPY_ROWS):
                end = min(start + COPY_ROWS, int(hi))
                block[start - lo : end - lo] = torch.from_numpy(np.asarray(vectors[start:end], np.float32))
            self.shards.append((int(lo), block))

    @torch.inference_mode()
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores [nq, k] float32, rows [nq, k] int64) by inner product, best first; -1 rows pad when k
        exceeds the vectors."""
        nq = len(queries)
        per_shard = [self._search_shard(lo, block, queries, k) for lo, block in self.shards]
        scores = torch.cat([s.cpu() for s, _ in per_shard], dim=1)
        rows = torch.cat([r.cpu() for _, r in per_shard], dim=1)
        top = min(k, scores.shape[1])
        best, where = torch.topk(scores, top, dim=1)
        out_s = np.full((nq, k), -np.inf, dtype=np.float32)
        out_r = np.full((nq, k), -1, dtype=np.int64)
        out_s[:, :top], out_r[:, :top] = best.numpy(), torch.gather(rows, 1, where).numpy()
        return out_s, out_r

    def _search_shard(
        self, lo: int, block: torch.Tensor, queries: np.ndarray, k: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """This shard's top-k of every query (scores and global rows), left on the shard's device."""
        q = torch.from_numpy(np.ascontiguousarray(queries, np.float32)).to(block.device)
        step = max(1024, SCORE_BUDGET // max(1, len(q)))
        best_s = torch.empty((len(q), 0), device=block.device)
        best_r = torch.empty((len(q), 0), dtype=torch.int64, device=block.device)
        for start in range(0, len(block), step):
            scores = q @ block[start : start + step].float().T
            s, r = torch.topk(scores, min(k, scores.shape[1]), dim=1)
            best_s = torch.cat([best_s, s], dim=1)
            best_r = torch.cat([best_r, r + (lo + start)], dim=1)
            if best_s.shape[1] > k:
                best_s, keep = torch.topk(best_s, k, dim=1)
                best_r = torch.gather(best_r, 1, keep)
        return best_s, best_r


def flat_vectors(index) -> np.ndarray:
    """The [ntotal, d] float32 vectors of a faiss `IndexFlat`, as a view (no copy; memory-mapped stays mapped)."""
    import faiss

    return faiss.rev_swig_ptr(index.get_xb(), index.ntotal * index.d).reshape(index.ntotal, index.d)
