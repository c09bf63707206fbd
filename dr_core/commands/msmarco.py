"""Commands for MS MARCO's raw files, the title join, negatives from the triples, Parquet tables and runs."""

from __future__ import annotations

import argparse

from dr_core.commands import given
from dr_core.data import formats
from dr_core.data.msmarco import tables, title_join, triples
from dr_core.data.msmarco.files import fetch_raw_file
from dr_core.runs import trec_to_msmarco_run


def _add_fetch(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("fetch-msmarco", help="download one raw MS MARCO file (from its archive when it ships in one)")
    s.add_argument("--name", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--archive-dir", required=True, help="where downloaded archives are kept")
    s.set_defaults(func=_fetch)


def _fetch(a: argparse.Namespace) -> None:
    fetch_raw_file(a.name, a.out, a.archive_dir)


def _add_msmarco(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("msmarco", help="MS MARCO steps: join titles, negatives from triples, Parquet, runs")
    s.add_argument("step", choices=["join", "triples", "corpus", "queries", "qrels", "run"])
    s.add_argument("--para", help="join: para.txt (pid<TAB>text)")
    s.add_argument("--titles", help="join: para.title.txt (pid<TAB>title)")
    s.add_argument("--triples", help="triples: qidpidtriples.train.full.2.tsv(.gz)")
    s.add_argument("--corpus-tsv", help="corpus: the joined corpus.tsv (pid<TAB>title<TAB>text)")
    s.add_argument("--query-files", nargs="+", help="queries: query files (qid<TAB>text), e.g. train and dev")
    s.add_argument("--qrels", help="qrels: an MS MARCO qrels file")
    s.add_argument("--corpus", help="qrels: the corpus Parquet (the judged passages must be in it)")
    s.add_argument("--queries", help="qrels: the queries Parquet (the judged queries must be in it)")
    s.add_argument("--run", help="run: a TREC run, written in the MS MARCO format")
    s.add_argument("--out", required=True)
    s.set_defaults(func=_msmarco)


def _msmarco(a: argparse.Namespace) -> None:
    if a.step == "join":
        title_join.join_titles(*given(a, "para", "titles"), a.out)
    elif a.step == "triples":
        triples.negatives_from_triples(*given(a, "triples"), a.out)
    elif a.step == "corpus":
        tables.corpus_to_parquet(*given(a, "corpus_tsv"), a.out)
    elif a.step == "queries":
        tables.queries_to_parquet(*given(a, "query_files"), a.out)
    elif a.step == "qrels":
        formats.qrels_to_parquet(*given(a, "qrels", "corpus", "queries"), a.out)
    elif a.step == "run":
        trec_to_msmarco_run(*given(a, "run"), a.out)


def register(sub: argparse._SubParsersAction) -> None:
    """MS MARCO's raw files, the title join, negatives from the triples, Parquet tables and runs."""
    for add in (_add_fetch, _add_msmarco):
        add(sub)
