"""Search a round's faiss index in batches of queries and write the TREC run as it goes.

Results stay integer row ids (row i = the i-th id of the corpus shards in order) until a batch is ranked in
dr_core.runs' order (the score rounded to the run file's precision, then doc id descending), the order trec_eval,
the fusion step and the MS MARCO run writer use. Memory is the index plus one batch of queries, whatever their number.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import faiss
import numpy as np
import torch

from dr_core.atomic import atomic_path
from dr_core.index import open_index, set_search_params
from dr_core.runs import rank_order, round_scores, tie_keys, trec_line
from dr_core.settings import setting
from dr_core.torch_flat import TorchFlat, flat_vectors

log = logging.getLogger(__name__)

GPU_MAX_K = 2048  # faiss-gpu returns at most this many results a query


@dataclass(frozen=True)
class IndexFiles:
    """A round's index of one dataset: the faiss file, its JSON description (dr_core.index) and the corpus shards'
    ids files, in the index's row order."""

    index: str | Path
    meta: str | Path
    ids: Sequence[str | Path]


@dataclass(frozen=True)
class SearchSettings:
    """How a split's judged queries are searched (retrieve): the depth, the query encoding and the recipe's index.*
    search keys."""

    k: int = setting(1000, "results per query (eval.depth; negatives.mine.depth when mining)")
    batch_size: int = setting(256, "queries encoded at a time")
    query_batch: int = setting(8192, "queries searched (and held) at a time")
    max_len: int | None = setting(None, "query length; null or 0: the model's")
    nprobe: int | None = setting(None, "IVF lists probed (index.nprobe); null: nlist / 64")
    ef_search: int | None = setting(None, "HNSW efSearch (index.ef_search); null: 2k")
    gpu_fp16: bool = setting(False, "fp16 storage of the index on GPUs")


def load_ids(ids_paths: Sequence[str | Path]) -> np.ndarray:
    """Every doc id of the shards, in row order (a fixed-width string array)."""
    lines: list[str] = []
    for p in ids_paths:
        lines.extend(Path(p).read_text(encoding="utf-8").splitlines())
    return np.array(lines)


def rank_rows(scores: np.ndarray, rows: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort each query's results in `rank_order` (rounded score descending, then doc id descending, `keys` being
    `tie_keys` of the ids); -1 rows (padding) last."""
    rounded = np.where(rows >= 0, round_scores(scores), -np.inf)
    tie = np.where(rows >= 0, keys[np.maximum(rows, 0)], -1)
    order = rank_order(rounded, tie)
    return np.take_along_axis(rows, order, axis=1), np.take_along_axis(rounded, order, axis=1)


def search_batch(index: faiss.Index, queries: np.ndarray, k: int, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Top-k rows ([nq, k], -1 pads) and rounded scores of a batch of queries, in run order."""
    scores, rows = index.search(np.ascontiguousarray(queries, dtype=np.float32), min(k, index.ntotal))
    return rank_rows(scores, rows, keys)


def write_trec_batch(
    f: TextIO, qids: Sequence[str], ids: np.ndarray, rows: np.ndarray, scores: np.ndarray, tag: str
) -> None:
    """Append a batch's ranking to an open run file; doc ids are looked up once per batch."""
    for qid, r, s in zip(qids, rows, scores):
        keep = r >= 0
        f.write(
            "".join(
                trec_line(qid, d, rank, x, tag)
                for rank, (d, x) in enumerate(zip(ids[r[keep]].tolist(), s[keep].tolist()), start=1)
            )
        )


def to_gpus(index: faiss.Index, k: int, fp16: bool = False) -> faiss.Index | TorchFlat:
    """The index on the GPUs, as Tevatron's and FlagEmbedding's search do (fp16 storage with `fp16`): an exact
    (Flat) index as a `TorchFlat` sharded over every CUDA device torch sees, any other type through faiss-gpu,
    sharded over every GPU it sees. The CPU index comes back when there is no GPU, k is above faiss-gpu's limit,
    or faiss-gpu has no version of the index type (HNSW)."""
    if isinstance(index, faiss.IndexFlat) and torch.cuda.is_available():
        devices = [torch.device("cuda", i) for i in range(torch.cuda.device_count())]
        log.info("exact index on %d GPU(s) with torch, sharded, fp16 %s", len(devices), fp16)
        try:
            return TorchFlat(flat_vectors(index), devices, fp16)
        except torch.cuda.OutOfMemoryError as e:
            gb = index.ntotal * index.d * (2 if fp16 else 4) / 2**30
            raise RuntimeError(
                f"the exact index ({index.ntotal} x {index.d}, {gb:.1f} GiB {'fp16' if fp16 else 'fp32'}) does not fit "
                f"the memory of {len(devices)} GPU(s): set index.gpu_fp16: true, use more GPUs, or an approximate "
                "index.factory"
            ) from e
    ngpu = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    if ngpu == 0 or k > GPU_MAX_K:
        return index
    options = faiss.GpuMultipleClonerOptions()
    options.shard, options.useFloat16 = True, fp16
    try:
        gpu_index = faiss.index_cpu_to_all_gpus(index, co=options, ngpu=ngpu)
    except RuntimeError as e:
        log.warning("index stays on the CPU: %s", str(e).strip().splitlines()[-1])
        return index
    log.info("index on %d GPU(s) with faiss, sharded, fp16 %s", ngpu, fp16)
    return gpu_index


def search_to_run(
    index: faiss.Index,
    batches: Iterable[tuple[Sequence[str], np.ndarray]],
    ids: np.ndarray,
    k: int,
    out: str | Path,
    tag: str,
) -> int:
    """Search each (qids, embeddings) batch and write its lines at once (the file appears, complete, at the end).
    Returns the number of queries."""
    keys, n = tie_keys(ids), 0
    with atomic_path(out) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for qids, emb in batches:
            if emb.shape[1] != index.d:
                raise ValueError(f"query dimension {emb.shape[1]} != index dimension {index.d}")
            rows, scores = search_batch(index, emb, k, keys)
            write_trec_batch(f, qids, ids, rows, scores, tag)
            n += len(qids)
            log.info("%d queries searched", n)
    return n


def open_for_search(
    files: IndexFiles, model_dir: str | Path, settings: SearchSettings
) -> tuple[faiss.Index | TorchFlat, np.ndarray]:
    """The checked index with its search settings applied (on the GPUs when there are any) and the doc ids."""
    index = open_index(files.index, files.meta, files.ids, model_dir)
    set_search_params(index, settings.k, settings.nprobe, settings.ef_search)
    return to_gpus(index, settings.k, settings.gpu_fp16), load_ids(files.ids)


def retrieve(
    model_dir: str | Path,
    query_tokens: str | Path,
    qrels: str | Path,
    files: IndexFiles,
    out: str | Path,
    tag: str,
    settings: SearchSettings,
) -> int:
    """Encode a split's judged queries `settings.query_batch` at a time, search each batch on the index `files`,
    stream the run (top `settings.k`, run tag `tag`) to `out`. Returns the number of queries."""
    from dr_core.encode import judged_query_batches

    s = settings
    index, ids = open_for_search(files, model_dir, s)
    batches = judged_query_batches(model_dir, query_tokens, qrels, s.query_batch, s.batch_size, s.max_len)
    return search_to_run(index, batches, ids, s.k, out, tag)
