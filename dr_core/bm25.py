"""BM25 first-stage retrieval with bm25s (Snowball stemmer and stopwords)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import bm25s
import numpy as np
import pandas as pd

from dr_core.settings import setting

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Bm25Settings:
    """BM25's scoring and text analysis (the recipe's bm25.* keys), for its runs and its positives' scores."""

    k1: float = setting(1.5, "term-frequency saturation")
    b: float = setting(0.75, "document-length normalisation")
    stemmer: str | None = setting("english", "Snowball stemmer language; null: no stemming")
    stopwords: str | None = setting("en", "bm25s stopword list; null: none")


def _stemmer(language: str | None):
    if not language:
        return None
    import Stemmer

    return Stemmer.Stemmer(language)


def bm25_search(
    corpus: pd.DataFrame,
    queries: pd.DataFrame,
    k: int,
    settings: Bm25Settings = Bm25Settings(),
    threads: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k corpus ids and scores for each query (rows follow `queries`; '' pads when k exceeds the corpus)."""
    stopwords = settings.stopwords
    stem = _stemmer(settings.stemmer)
    retriever = _index(corpus, settings.k1, settings.b, stem, stopwords)
    query_tokens = bm25s.tokenize(queries["text"].tolist(), stopwords=stopwords, stemmer=stem, show_progress=False)
    k_eff = min(k, len(corpus))
    idx, scores = retriever.retrieve(query_tokens, k=k_eff, n_threads=threads, show_progress=True)
    ids = corpus["id"].to_numpy(dtype=object)[idx]
    if k_eff < k:
        pad = k - k_eff
        ids = np.pad(ids, ((0, 0), (0, pad)), constant_values="")
        scores = np.pad(scores, ((0, 0), (0, pad)))
    return ids, scores


def _index(corpus: pd.DataFrame, k1: float, b: float, stem, stopwords: str | None) -> bm25s.BM25:
    """BM25 over each document's "title text"."""
    docs = (corpus["title"].fillna("") + " " + corpus["text"].fillna("")).tolist()
    corpus_tokens = bm25s.tokenize(docs, stopwords=stopwords, stemmer=stem, show_progress=True)
    retriever = bm25s.BM25(k1=k1, b=b)
    retriever.index(corpus_tokens, show_progress=True)
    return retriever


def bm25_pair_scores(
    corpus: pd.DataFrame,
    queries: pd.DataFrame,
    pairs: pd.DataFrame,
    settings: Bm25Settings = Bm25Settings(),
) -> np.ndarray:
    """BM25's score (as `bm25_search` ranks with the same settings) of each (qid, docid) row of `pairs`, wherever
    the document ranks: the scores of a query's judged positives, for the false-negative filter."""
    stopwords = settings.stopwords
    stem = _stemmer(settings.stemmer)
    retriever = _index(corpus, settings.k1, settings.b, stem, stopwords)
    row = {docid: i for i, docid in enumerate(corpus["id"])}
    text = dict(zip(queries["qid"], queries["text"]))
    out = np.zeros(len(pairs), dtype=np.float32)
    for qid, group in pairs.groupby("qid", sort=False):
        words = bm25s.tokenize([text[qid]], stopwords=stopwords, stemmer=stem, return_ids=False, show_progress=False)[0]
        known = [w for w in words if w in retriever.vocab_dict]
        if known:
            out[group.index.to_numpy()] = retriever.get_scores(known)[[row[d] for d in group["docid"]]]
    return out
