"""Commands that make runs: BM25, and dense retrieval (encode the corpus, build the index, search it). bm25s,
torch and faiss load inside the handlers that use them."""

from __future__ import annotations

import argparse
import logging

import pandas as pd

from dr_core.runs import write_trec
from dr_core.settings import settings_from_args

log = logging.getLogger("dr_core")


def _add_bm25(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("bm25", help="BM25 top-k for the queries of a split", settings={"": "dr_core.bm25:Bm25Settings"})
    for name in ("--corpus", "--queries", "--qrels", "--out"):
        s.add_argument(name, required=True)
    s.add_argument("--k", type=int, default=1000)
    s.set_defaults(func=_bm25)


def _bm25(a: argparse.Namespace) -> None:
    from dr_core.bm25 import Bm25Settings, bm25_search

    corpus = pd.read_parquet(a.corpus)
    queries = _split_queries(a.queries, a.qrels)
    ids, scores = bm25_search(corpus, queries, a.k, settings_from_args(Bm25Settings, a), threads=max(1, a.threads))
    write_trec(a.out, queries["qid"].tolist(), ids, scores, tag="bm25")


def _split_queries(queries_path: str, qrels_path: str) -> pd.DataFrame:
    """The queries judged in a split's qrels, sorted by qid."""
    qids = set(pd.read_parquet(qrels_path)["qid"])
    queries = pd.read_parquet(queries_path)
    return queries[queries["qid"].isin(qids)].sort_values("qid", ignore_index=True)


def _add_encode(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("encode", help="embed one corpus shard", settings={"": "dr_core.encode:EncodeSettings"})
    for name in ("--model", "--tokens", "--emb-out", "--ids-out"):
        s.add_argument(name, required=True)
    s.add_argument("--shard", type=int, required=True)
    s.add_argument("--num-shards", type=int, required=True)
    s.set_defaults(func=_encode)


def _encode(a: argparse.Namespace) -> None:
    from dr_core.encode import EncodeSettings, encode_corpus_shard

    settings = settings_from_args(EncodeSettings, a)
    encode_corpus_shard(a.model, a.tokens, a.shard, a.num_shards, a.emb_out, a.ids_out, settings)


def _add_index(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "index",
        help="build a faiss index over a round's corpus embedding shards",
        settings={"": "dr_core.index:IndexSettings"},
    )
    for name in ("--model", "--out", "--meta-out"):
        s.add_argument(name, required=True)
    s.add_argument("--shards", nargs="+", required=True, help="emb.npy ids.txt pairs")
    s.set_defaults(func=_index)


def _index(a: argparse.Namespace) -> None:
    from dr_core.index import IndexSettings, build_index

    if len(a.shards) % 2:
        raise SystemExit("--shards takes pairs: embeddings.npy ids.txt")
    pairs = list(zip(a.shards[::2], a.shards[1::2]))
    build_index(pairs, a.model, a.out, a.meta_out, settings_from_args(IndexSettings, a))


def _add_retrieve(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "retrieve",
        help="encode a split's queries in batches and search a round's index",
        settings={"": "dr_core.search:SearchSettings"},
    )
    for name in ("--model", "--query-tokens", "--qrels", "--index", "--index-meta", "--out", "--tag"):
        s.add_argument(name, required=True)
    s.add_argument("--ids", nargs="+", required=True, help="the shards' ids files, in the index's row order")
    s.set_defaults(func=_retrieve)


def _retrieve(a: argparse.Namespace) -> None:
    from dr_core.search import IndexFiles, SearchSettings, retrieve

    settings = settings_from_args(SearchSettings, a)
    files = IndexFiles(a.index, a.index_meta, a.ids)
    n = retrieve(a.model, a.query_tokens, a.qrels, files, a.out, a.tag, settings)
    log.info("%d queries, depth %d", n, settings.k)


def register(sub: argparse._SubParsersAction) -> None:
    """Runs: BM25, and dense retrieval (encode the corpus, build the index, search it)."""
    for add in (_add_bm25, _add_encode, _add_index, _add_retrieve):
        add(sub)
