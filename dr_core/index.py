"""A faiss index per round and dataset: built once from the corpus embedding shards, saved beside a JSON of what
it was built from (dimension, count, factory string, hashes of the shards' ids and of the model), and opened
memory-mapped for search, after checking it still matches its shards and model."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
from tqdm import tqdm

from dr_core.atomic import atomic_path, write_json
from dr_core.settings import setting

log = logging.getLogger(__name__)

FLAT_MAX_VECTORS = 2_000_000  # "auto": exact search up to this many vectors (and when they fit memory_gb)
NPROBE_FRACTION = 64  # index.nprobe null: probe nlist / 64 lists (1/64 of the vectors, 32 of IVF2048)
ADD_CHUNK = 65_536  # rows converted to float32 and added at a time: memory stays one chunk above the index


def default_factory(n: int, dim: int, memory_gb: float) -> str:
    """The `auto` index: Flat (exact) for up to 2M vectors that fit `memory_gb` in float32; IVF-Flat when the
    float32 vectors fit half of it; IVF-PQ otherwise, with dim/8 sub-quantizers of 8 bits (dim/8 bytes a vector).
    nlist is the power of two nearest 4*sqrt(n), so a list holds about sqrt(n)/4 vectors."""
    fp32_gb = n * dim * 4 / 2**30
    if n <= FLAT_MAX_VECTORS and fp32_gb <= memory_gb:
        return "Flat"
    nlist = 2 ** round(math.log2(4 * math.sqrt(n)))
    if fp32_gb <= memory_gb / 2:
        return f"IVF{nlist},Flat"
    m = max(d for d in range(1, max(1, dim // 8) + 1) if dim % d == 0)
    return f"IVF{nlist},PQ{m}"


def files_digest(paths: Sequence[str | Path]) -> str:
    """sha256 over the contents of `paths`, in order (each file's name is not part of it)."""
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
    return h.hexdigest()


def model_digest(model_dir: str | Path) -> str:
    """sha256 over a saved bi-encoder's `dr_encoder.json` and weight files (sorted by relative path)."""
    root = Path(model_dir)
    files = sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and (p.name == "dr_encoder.json" or p.suffix in (".safetensors", ".bin", ".pt"))
    )
    if not any(p.name == "dr_encoder.json" for p in files):
        raise FileNotFoundError(f"{root}: no dr_encoder.json (not a saved bi-encoder)")
    return files_digest(files)


def _shard_lengths(shards: Sequence[tuple[str | Path, str | Path]]) -> tuple[list[int], int]:
    """Each shard's number of embeddings, checked against its ids file, and their common dimension."""
    lengths, dim = [], None
    for emb_path, ids_path in shards:
        emb = np.load(emb_path, mmap_mode="r")
        n_ids = sum(1 for _ in open(ids_path, encoding="utf-8"))
        if emb.ndim != 2 or n_ids != len(emb):
            raise ValueError(f"{ids_path}: {n_ids} ids for {len(emb)} embeddings in {emb_path}")
        if dim is not None and emb.shape[1] != dim:
            raise ValueError(f"{emb_path}: dimension {emb.shape[1]}, the shards before it have {dim}")
        dim = emb.shape[1]
        lengths.append(len(emb))
    if dim is None:
        raise ValueError("no embedding shards given")
    return lengths, dim


def _rows(paths: Sequence[str | Path], lengths: Sequence[int], rows: np.ndarray) -> np.ndarray:
    """Float32 rows (global, sorted) gathered across shards, one shard mapped at a time."""
    bounds = np.cumsum([0, *lengths])
    parts = []
    for s, path in enumerate(paths):
        local = rows[(rows >= bounds[s]) & (rows < bounds[s + 1])] - bounds[s]
        parts.append(np.asarray(np.load(path, mmap_mode="r")[local], dtype=np.float32))
    return np.concatenate(parts)


def make_index(factory: str, dim: int) -> faiss.Index:
    """An empty inner-product index from a faiss `index_factory` string; an unparsable one names index.factory."""
    try:
        return faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as e:
        reason = str(e).strip().splitlines()[-1]
        raise ValueError(f"config: index.factory {factory!r} is not a faiss index_factory string ({reason})") from None


def train_size(index: faiss.Index, n: int, requested: int | None) -> int:
    """Training sample size: `requested` (index.train_size), else 64 vectors per IVF list (at least 10,000), or
    64 x 256 per PQ codebook; never more than `n`."""
    if requested:
        return min(n, requested)
    ivf = _ivf(index)
    return min(n, max(10_000, 64 * (ivf.nlist if ivf is not None else 256)))


@dataclass(frozen=True)
class IndexSettings:
    """How a faiss index is built (the recipe's index.factory, memory_gb, seed and train_size)."""

    factory: str = setting("auto", "faiss index_factory string, or auto (from the corpus size and memory_gb)")
    memory_gb: float = setting(16.0, "memory the auto choice may fill")
    seed: int = setting(42, "seed of the training sample")
    train_size: int | None = setting(None, "training sample; null: 64 vectors per IVF list")


def build_index(
    shards: Sequence[tuple[str | Path, str | Path]],
    model_dir: str | Path,
    out: str | Path,
    meta_out: str | Path,
    settings: IndexSettings,
) -> dict:
    """Build the index over every shard's rows (row i = i-th id of the shards in order), train it on a seeded
    sample when it needs training, and write it and its JSON description atomically."""
    factory, memory_gb, seed = settings.factory, settings.memory_gb, settings.seed
    paths = [emb for emb, _ in shards]
    lengths, dim = _shard_lengths(shards)
    n = sum(lengths)
    chosen = default_factory(n, dim, memory_gb) if factory == "auto" else factory
    index = make_index(chosen, dim)
    if not index.is_trained:
        m = train_size(index, n, settings.train_size)
        rows = np.sort(np.random.default_rng(seed).choice(n, size=m, replace=False))
        log.info("training %s on %d of %d vectors (seed %d)", chosen, m, n, seed)
        t0 = time.perf_counter()
        index.train(_rows(paths, lengths, rows))
        log.info("trained in %.1f s", time.perf_counter() - t0)
    t0 = time.perf_counter()
    for path in tqdm(paths, desc=f"add to {chosen}", unit="shard"):
        a = np.load(path, mmap_mode="r")  # one shard mapped at a time: its pages, not the corpus's, count in RSS
        for start in range(0, len(a), ADD_CHUNK):
            index.add(np.ascontiguousarray(a[start : start + ADD_CHUNK], dtype=np.float32))
        del a
    log.info("added %d vectors in %.1f s", index.ntotal, time.perf_counter() - t0)
    meta = {
        "factory": chosen,
        "requested_factory": factory,
        "dimension": dim,
        "count": int(index.ntotal),
        "metric": "inner_product",
        "ids_sha256": files_digest([ids for _, ids in shards]),
        "model_sha256": model_digest(model_dir),
        "seed": seed,
    }
    with atomic_path(out) as tmp:
        faiss.write_index(index, str(tmp))
        write_json(meta, meta_out)
    log.info("%s: %s over %d x %d", out, chosen, n, dim)
    return meta


def open_index(
    path: str | Path, meta_path: str | Path, ids_paths: Sequence[str | Path], model_dir: str | Path
) -> faiss.Index:
    """Read an index (memory-mapped where its type allows) after checking it was built from these shards' ids and
    this model; a mismatch names the file."""
    meta = json.loads(Path(meta_path).read_text())
    if meta["ids_sha256"] != files_digest(ids_paths):
        raise ValueError(f"{path}: built from other corpus shards than {list(map(str, ids_paths))} (ids differ)")
    if meta["model_sha256"] != model_digest(model_dir):
        raise ValueError(f"{path}: built with another model than {model_dir} (another round or model)")
    try:
        index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
    except RuntimeError:  # an index type that cannot be memory-mapped
        index = faiss.read_index(str(path))
    if index.ntotal != meta["count"] or index.d != meta["dimension"]:
        said = f"{meta['count']} x {meta['dimension']}"
        raise ValueError(f"{path}: {index.ntotal} x {index.d} vectors, but {meta_path} says {said}")
    return index


def _ivf(index: faiss.Index) -> faiss.IndexIVF | None:
    try:
        return faiss.extract_index_ivf(index)
    except RuntimeError:
        return None


def _hnsw(index: faiss.Index):
    inner = faiss.downcast_index(index.index if isinstance(index, faiss.IndexPreTransform) else index)
    return inner.hnsw if hasattr(inner, "hnsw") else None


def set_search_params(index: faiss.Index, k: int, nprobe: int | None, ef_search: int | None) -> None:
    """Apply index.nprobe (IVF) and index.ef_search (HNSW; raised to k so k results can come back)."""
    ivf = _ivf(index)
    if nprobe is not None:
        if ivf is None:
            raise ValueError(f"config: index.nprobe is set ({nprobe}) but the index has no IVF lists")
        if not 1 <= nprobe <= ivf.nlist:
            raise ValueError(f"config: index.nprobe {nprobe} must be in [1, nlist = {ivf.nlist}]")
        ivf.nprobe = nprobe
    elif ivf is not None:
        ivf.nprobe = max(1, ivf.nlist // NPROBE_FRACTION)
    hnsw = _hnsw(index)
    if ef_search is not None and hnsw is None:
        raise ValueError(f"config: index.ef_search is set ({ef_search}) but the index is not HNSW")
    if hnsw is not None:
        hnsw.efSearch = max(k, ef_search or 2 * k)
