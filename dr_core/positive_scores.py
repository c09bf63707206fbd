"""The mining model's score of each judged positive, wherever it ranks: what the false-negative filter compares
candidates with (NV-Retriever's TopK-PercPos; sentence-transformers' relative_margin). Written as qid, docid,
score (TSV)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from dr_core.atomic import atomic_path
from dr_core.errors import DataError

if TYPE_CHECKING:  # bm25s loads only for BM25's scores: the dense filter's step does not need it
    from dr_core.bm25 import Bm25Settings


def judged_pairs(qrels: pd.DataFrame) -> pd.DataFrame:
    """The (qid, docid) of each judged positive (rel > 0), sorted."""
    pos = qrels.loc[qrels["rel"] > 0, ["qid", "docid"]].drop_duplicates()
    return pos.sort_values(["qid", "docid"]).reset_index(drop=True)


def dense_pair_scores(
    model_dir: str | Path,
    query_tokens: str | Path,
    qrels: str | Path,
    shards: Sequence[tuple[str | Path, str | Path]],
    max_len: int | None = None,
) -> pd.DataFrame:
    """Each judged positive's score under a saved bi-encoder, as its run scores it: the query encoded as retrieve
    encodes it, times the passage's stored embedding (the corpus shards the index was built from)."""
    from dr_core.encode import encode_judged_queries
    from dr_core.search import load_ids

    pairs = judged_pairs(pd.read_parquet(qrels))
    qids, q_emb = encode_judged_queries(model_dir, query_tokens, qrels, max_len=max_len)
    q_row = {q: i for i, q in enumerate(qids)}
    wanted = pairs["docid"].unique()
    vectors: dict[str, np.ndarray] = {}
    for emb_path, ids_path in shards:
        ids = load_ids([ids_path])
        rows = np.flatnonzero(np.isin(ids, wanted))
        picked = np.asarray(np.load(emb_path, mmap_mode="r")[rows], dtype=np.float32)
        vectors.update(zip(ids[rows].tolist(), picked))
    missing = set(wanted) - vectors.keys()
    if missing:
        raise DataError(
            shards[0][1],
            None,
            f"{len(missing)} judged positives are not in the corpus shards, e.g. {sorted(missing)[0]}",
        )
    scores = [float(q_emb[q_row[q]].astype(np.float32) @ vectors[d]) for q, d in zip(pairs["qid"], pairs["docid"])]
    return pairs.assign(score=np.asarray(scores, dtype=np.float32))


def bm25_positive_scores(
    corpus: str | Path, queries: str | Path, qrels: str | Path, settings: Bm25Settings
) -> pd.DataFrame:
    """Each judged positive's BM25 score, with the settings the BM25 run used."""
    from dr_core.bm25 import bm25_pair_scores

    pairs = judged_pairs(pd.read_parquet(qrels))
    scores = bm25_pair_scores(pd.read_parquet(corpus), pd.read_parquet(queries), pairs, settings)
    return pairs.assign(score=scores)


def write_scores(scores: pd.DataFrame, dest: str | Path) -> None:
    with atomic_path(dest) as tmp:
        scores.to_csv(tmp, sep="\t", index=False, header=False, float_format="%.6g")


def weakest_positive(path: str | Path) -> dict[str, float]:
    """Per query, the lowest score among its judged positives (from write_scores' file)."""
    scores = pd.read_csv(path, sep="\t", header=None, names=["qid", "docid", "score"], dtype={"qid": str, "docid": str})
    return scores.groupby("qid")["score"].min().to_dict()
