"""Embed pre-tokenized corpus shards and queries with a saved bi-encoder (length-sorted batches)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from tqdm import tqdm
from transformers import PreTrainedTokenizerBase

from dr_core.atomic import atomic_path
from dr_core.batching import Padder
from dr_core.compiled import compile_in_place
from dr_core.device import autocast, pick_device, resolve_precision
from dr_core.model import BiEncoder, load_tokenizer
from dr_core.settings import setting
from dr_core.tokenization import TokenStore


@torch.inference_mode()
def embed(
    model: BiEncoder,
    padder: Padder,
    rows: Sequence[np.ndarray],
    is_query: bool,
    batch_size: int,
    precision: str = "auto",
    desc: str = "encode",
) -> np.ndarray:
    """Float32 embeddings [len(rows), D], computed longest-first so padding is minimal."""
    device = next(model.parameters()).device
    prec = resolve_precision(precision, device)
    order = np.argsort([-len(r) for r in rows], kind="stable")
    out: np.ndarray | None = None
    model.eval()
    with tqdm(total=len(rows), desc=desc, unit="text") as bar:
        for start in range(0, len(rows), batch_size):
            idx = order[start : start + batch_size]
            batch = {k: v.to(device) for k, v in padder([rows[i] for i in idx]).items()}
            with autocast(prec, device):
                emb = model.encode(batch["input_ids"], batch["attention_mask"], is_query=is_query)
            emb = emb.float().cpu().numpy()
            if out is None:
                out = np.empty((len(rows), emb.shape[1]), dtype=np.float32)
            out[idx] = emb
            bar.update(len(idx))
    if out is None:
        raise ValueError("nothing to encode")
    return out


def shard_bounds(n: int, shard: int, num_shards: int) -> tuple[int, int]:
    """Row range [start, end) of shard `shard` out of `num_shards` near-equal shards."""
    if not 0 <= shard < num_shards:
        raise ValueError(f"shard {shard} out of range for {num_shards} shards")
    return n * shard // num_shards, n * (shard + 1) // num_shards


@dataclass(frozen=True)
class EncodeSettings:
    """How a corpus shard is embedded (the recipe's encode.* keys; encode.p_max_len is max_len)."""

    batch_size: int = setting(128, "passages embedded at a time")
    max_len: int | None = setting(None, "passage length; null: the model's")
    fp16: bool = setting(False, "store the embeddings in float16")
    compile: bool = setting(False, "torch.compile the model (the same embeddings within float tolerance)")


def encode_corpus_shard(
    model_dir: str | Path,
    tokens: str | Path,
    shard: int,
    num_shards: int,
    emb_out: str | Path,
    ids_out: str | Path,
    settings: EncodeSettings,
    precision: str = "auto",
) -> None:
    """Write one shard's embeddings (.npy; float16 with `settings.fp16`, half the disk and memory) and ids (one per
    line), computed in `precision` (dr_core.device: auto, fp32, fp16, bf16)."""
    model = BiEncoder.load(model_dir).to(pick_device())
    if settings.compile:
        compile_in_place(model)
    padder = Padder(load_tokenizer(model_dir), settings.max_len or model.spec.p_max_len)
    store = TokenStore(tokens, rows=shard_bounds(pq.read_metadata(tokens).num_rows, shard, num_shards))
    rows = [store.by_row(i) for i in range(len(store))]
    emb = embed(model, padder, rows, False, settings.batch_size, precision, desc=f"encode shard {shard}/{num_shards}")
    with atomic_path(emb_out) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, emb.astype(np.float16) if settings.fp16 else emb)
    with atomic_path(ids_out) as tmp:
        tmp.write_text("".join(f"{i}\n" for i in store.ids), encoding="utf-8")


def encode_queries(
    model: BiEncoder,
    tokenizer: PreTrainedTokenizerBase,
    tokens: TokenStore,
    qids: Sequence[str],
    batch_size: int = 256,
    max_len: int | None = None,
    precision: str = "auto",
) -> np.ndarray:
    """Embeddings of the given queries, in the order of `qids`."""
    padder = Padder(tokenizer, max_len or model.spec.q_max_len)
    return embed(model, padder, [tokens[q] for q in qids], True, batch_size, precision, desc="encode queries")


def _judged_qids(qrels: str | Path) -> list[str]:
    import pandas as pd

    return sorted(pd.read_parquet(qrels, columns=["qid"])["qid"].unique())


def judged_query_batches(
    model_dir: str | Path,
    query_tokens: str | Path,
    qrels: str | Path,
    query_batch: int,
    batch_size: int = 256,
    max_len: int | None = None,
) -> Iterator[tuple[list[str], np.ndarray]]:
    """The judged queries (sorted qids), `query_batch` at a time, with their embeddings: memory is one batch."""
    qids = _judged_qids(qrels)
    model = BiEncoder.load(model_dir).to(pick_device())
    tokenizer, tokens = load_tokenizer(model_dir), TokenStore(query_tokens)
    for start in range(0, len(qids), query_batch):
        chunk = qids[start : start + query_batch]
        yield chunk, encode_queries(model, tokenizer, tokens, chunk, batch_size, max_len)


def encode_judged_queries(
    model_dir: str | Path,
    query_tokens: str | Path,
    qrels: str | Path,
    batch_size: int = 256,
    max_len: int | None = None,
) -> tuple[list[str], np.ndarray]:
    """The queries judged in a qrels Parquet file (sorted qids) and their embeddings by a saved bi-encoder."""
    qids = _judged_qids(qrels)
    model = BiEncoder.load(model_dir).to(pick_device())
    return qids, encode_queries(model, load_tokenizer(model_dir), TokenStore(query_tokens), qids, batch_size, max_len)
