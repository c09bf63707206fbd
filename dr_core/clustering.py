"""Query clusters for group-robust training (COCO-DR): faiss k-means and a `qid<TAB>cluster` assignment file.

The file is a TSV with the header `qid<TAB>cluster`, one query per line, cluster ids in [0, k).
Typical use: encode the training queries, `kmeans(emb, k)`, `write_assignments(path, qids, ids)`; the trainer
reads it back with `read_assignments` and turns each batch's qids into a LongTensor with `cluster_ids`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dr_core.atomic import atomic_path
from dr_core.errors import DataError
from dr_core.settings import required, setting

log = logging.getLogger(__name__)

HEADER = "qid\tcluster"


@dataclass(frozen=True)
class ClusterSettings:
    """The DRO query clusters: dro.num_clusters k-means clusters of the train queries' embeddings, seeded with
    train.seed."""

    num_clusters: int = required("k-means clusters (dro.num_clusters)")
    seed: int = setting(42, "k-means seed (the recipe's train.seed)")
    batch_size: int = setting(256, "queries per forward pass of the encoder")


def kmeans(
    embeddings: np.ndarray,
    num_clusters: int,
    *,
    niter: int = 25,
    nredo: int = 1,
    seed: int = 0,
    spherical: bool = True,
) -> np.ndarray:
    """Cluster id (int64, [N]) of each row of `embeddings` [N, D] by faiss k-means.

    spherical: rows are L2-normalised and faiss keeps unit-norm centroids (cosine k-means); otherwise plain
    L2 k-means. nredo: restarts from different random centroids, the best objective kept. `num_clusters`
    above N is clamped to N with a warning.
    """
    x = np.array(embeddings, dtype=np.float32, order="C")  # a copy: normalised in place below
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"need a non-empty [N, D] array, got shape {x.shape}")
    k = _clamp_clusters(num_clusters, x.shape[0])
    if spherical:
        x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    import faiss

    km = faiss.Kmeans(x.shape[1], k, niter=niter, nredo=nredo, seed=seed, spherical=spherical, verbose=False)
    km.train(x)
    _, ids = km.assign(x)
    return ids.astype(np.int64)


def _clamp_clusters(num_clusters: int, n: int) -> int:
    if num_clusters < 1:
        raise ValueError(f"num_clusters must be >= 1, got {num_clusters}")
    if num_clusters > n:
        log.warning("num_clusters %d > %d queries: using %d clusters", num_clusters, n, n)
        return n
    return num_clusters


def write_assignments(path: str | Path, qids: Sequence[str], clusters: Iterable[int]) -> None:
    """Write `qid<TAB>cluster` lines (with header) atomically."""
    clusters = [int(c) for c in clusters]
    if len(qids) != len(clusters):
        raise ValueError(f"{len(qids)} qids but {len(clusters)} cluster ids")
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(HEADER + "\n")
            f.writelines(f"{q}\t{c}\n" for q, c in zip(qids, clusters))


def read_assignments(path: str | Path, num_clusters: int | None = None) -> dict[str, int]:
    """qid -> cluster id; DataError on a bad header, malformed line, duplicate qid or id outside [0, num_clusters)."""
    out: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if lineno == 1:
                if line != HEADER:
                    raise DataError(path, 1, f"expected header {HEADER!r}, got {line!r}")
                continue
            qid, cluster = _parse_line(path, lineno, line, num_clusters)
            if qid in out:
                raise DataError(path, lineno, f"duplicate qid '{qid}'")
            out[qid] = cluster
    if not out:
        raise DataError(path, None, "no assignments")
    return out


def _parse_line(path: str | Path, lineno: int, line: str, num_clusters: int | None) -> tuple[str, int]:
    fields = line.split("\t")
    if len(fields) != 2 or not fields[0]:
        raise DataError(path, lineno, f"expected 'qid<TAB>cluster', got {line!r}")
    try:
        cluster = int(fields[1])
    except ValueError:
        raise DataError(path, lineno, f"cluster id {fields[1]!r} is not an integer") from None
    if cluster < 0 or (num_clusters is not None and cluster >= num_clusters):
        raise DataError(path, lineno, f"cluster id {cluster} outside [0, {num_clusters or 'inf'})")
    return fields[0], cluster


def cluster_ids(assignments: dict[str, int], qids: Sequence[str], device: torch.device | None = None) -> torch.Tensor:
    """LongTensor [B] of the clusters of a batch's queries; KeyError naming the first unassigned qid."""
    missing = next((q for q in qids if q not in assignments), None)
    if missing is not None:
        raise KeyError(f"query '{missing}' has no cluster assignment")
    return torch.tensor([assignments[q] for q in qids], dtype=torch.long, device=device)
