"""Commands that download, validate and tokenize collections (BEIR, LoTTE, Tevatron's datasets)."""

from __future__ import annotations

import argparse

from dr_core.commands import given
from dr_core.data import lotte, tevatron
from dr_core.data.acquire import acquire_beir
from dr_core.data.beir import prepare_collection, prepare_qrels
from dr_core.settings import settings_from_args
from dr_core.tokenization import TokenizeSettings, tokenize_table


def _add_acquire(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("acquire", help="download and unpack a BEIR dataset zip")
    s.add_argument("--url", required=True)
    s.add_argument("--md5")
    s.add_argument("--cache-dir", required=True, help="where the zip is kept")
    s.add_argument("--out-dir", required=True)
    s.set_defaults(func=_acquire)


def _acquire(a: argparse.Namespace) -> None:
    acquire_beir(a.url, a.out_dir, md5=a.md5, cache_dir=a.cache_dir)


def _add_prepare(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("prepare", help="validate a BEIR corpus and queries, write Parquet")
    s.add_argument("--src", required=True)
    s.add_argument("--out-dir", required=True)
    s.add_argument("--empty-docs", choices=["error", "drop"], default="error")
    s.set_defaults(func=_prepare)


def _prepare(a: argparse.Namespace) -> None:
    prepare_collection(a.src, a.out_dir, a.empty_docs)


def _add_qrels(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("qrels", help="validate one split's qrels, write Parquet")
    for name in ("--src", "--split", "--corpus", "--queries", "--out"):
        s.add_argument(name, required=True)
    s.add_argument("--empty-docs", choices=["error", "drop"], default="error")
    s.add_argument(
        "--dev-keep", choices=["dev", "train"], help="carve a dev split from --split: write its queries, or the rest"
    )
    s.add_argument("--dev-share", type=float, help="share of the split's queries carved into the dev split")
    s.add_argument("--dev-count", type=int, help="number of the split's queries carved into the dev split")
    s.add_argument("--dev-seed", type=int, default=0)
    s.set_defaults(func=_qrels)


def _qrels(a: argparse.Namespace) -> None:
    carve = None
    if a.dev_keep:
        carve = {"share": a.dev_share, "count": a.dev_count, "seed": a.dev_seed, "keep": a.dev_keep}
    prepare_qrels(a.src, a.split, a.corpus, a.queries, a.out, a.empty_docs, carve)


def _add_lotte(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("lotte", help="LoTTE: fetch the release, or validate one domain/split/query set to Parquet")
    s.add_argument("step", choices=["fetch", "prepare", "qrels"])
    for name in ("--src", "--out-dir", "--cache-dir", "--domain", "--split", "--query-set"):
        s.add_argument(name)
    for name in ("--corpus", "--queries", "--out"):
        s.add_argument(name)
    s.set_defaults(func=_lotte)


def _lotte(a: argparse.Namespace) -> None:
    if a.step == "fetch":
        lotte.fetch_lotte(a.out_dir, a.cache_dir)
    elif a.step == "prepare":
        lotte.prepare_lotte(a.src, a.out_dir, a.domain, a.split, a.query_set)
    else:
        lotte.prepare_lotte_qrels(a.src, a.domain, a.split, a.query_set, a.corpus, a.queries, a.out)


def _add_tevatron(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "tevatron",
        help="Tevatron-format datasets (Hub name or .jsonl/.json/.parquet): corpus; one split's groups -> qrels "
        "(--out), queries and negatives; the splits' queries merged",
    )
    s.add_argument("step", choices=["corpus", "groups", "queries"])
    s.add_argument("--src", help="corpus, groups: a Hub dataset owner/name[/split] or a .jsonl/.json/.parquet file")
    s.add_argument("--cache-dir", help="corpus, groups: where datasets caches what it reads (default: its own)")
    s.add_argument("--corpus", help="groups: the corpus Parquet (every docid must be in it)")
    s.add_argument("--queries-out", help="groups: the split's queries Parquet")
    s.add_argument("--negatives-out", help="groups: the split's negatives (qid<TAB>pid,...)")
    s.add_argument("--judgements", help="groups: a TREC qrels file that judges the split instead of its positives")
    s.add_argument("--query-files", nargs="+", help="queries: the splits' queries Parquet files")
    s.add_argument("--out", required=True, help="corpus.parquet; groups: the split's qrels; queries.parquet")
    s.set_defaults(func=_tevatron)


def _tevatron(a: argparse.Namespace) -> None:
    if a.step == "corpus":
        tevatron.write_corpus(*given(a, "src"), a.out, a.cache_dir)
    elif a.step == "groups":
        src, corpus, queries, negatives = given(a, "src", "corpus", "queries_out", "negatives_out")
        tevatron.write_split(src, corpus, a.out, queries, negatives, a.cache_dir, a.judgements)
    else:
        tevatron.merge_queries(*given(a, "query_files"), a.out)


def _add_tokenize(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "tokenize",
        help="tokenize a corpus or queries Parquet file",
        settings={"": "dr_core.tokenization:TokenizeSettings"},
    )
    for name in ("--model", "--src", "--out", "--id-column"):
        s.add_argument(name, required=True)
    s.set_defaults(func=_tokenize)


def _tokenize(a: argparse.Namespace) -> None:
    from dr_core.model import load_tokenizer  # transformers, torch: only the commands that load a model

    tok = load_tokenizer(a.model)
    tokenize_table(a.src, a.out, tok, a.id_column, settings_from_args(TokenizeSettings, a))


def register(sub: argparse._SubParsersAction) -> None:
    """Download, validate and tokenize collections (BEIR, LoTTE, Tevatron)."""
    for add in (_add_acquire, _add_prepare, _add_qrels, _add_lotte, _add_tevatron, _add_tokenize):
        add(sub)
