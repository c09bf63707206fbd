"""BM25 first-stage retrieval with bm25s (Snowball stemmer and stopwords)."""

from __future__ import annotations

import logging

import bm25s
import numpy as np
import pandas as pd

log = logging.getLogger(__name__)


def _stemmer(language: str | None):
    if not language:
        return None
    import Stemmer

    return Stemmer.Stemmer(language)


def bm25_search(
    corpus: pd.DataFrame,
    queries: pd.DataFrame,
    k: int,
    *,
    k1: float = 1.5,
    b: float = 0.75,
    stemmer: str | None = "english",
    stopwords: str | None = "en",
    threads: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k corpus ids and scores for each query (rows follow `queries`; '' pads when k exceeds the corpus)."""
    stem = _stemmer(stemmer)
    docs = (corpus["title"].fillna("") + " " + corpus["text"].fillna("")).tolist()
    corpus_tokens = bm25s.tokenize(docs, stopwords=stopwords, stemmer=stem, show_progress=True)
    retriever = bm25s.BM25(k1=k1, b=b)
    retriever.index(corpus_tokens, show_progress=True)
    query_tokens = bm25s.tokenize(queries["text"].tolist(), stopwords=stopwords, stemmer=stem, show_progress=False)
    k_eff = min(k, len(docs))
    idx, scores = retriever.retrieve(query_tokens, k=k_eff, n_threads=threads, show_progress=True)
    ids = corpus["id"].to_numpy(dtype=object)[idx]
    if k_eff < k:
        pad = k - k_eff
        ids = np.pad(ids, ((0, 0), (0, pad)), constant_values="")
        scores = np.pad(scores, ((0, 0), (0, pad)))
    return ids, scores
