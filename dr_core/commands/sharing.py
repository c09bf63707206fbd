"""Commands for a model's card, its upload to the Hub, and trying a round on typed queries. torch, transformers
and faiss load inside the handlers."""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pandas as pd

from dr_core.errors import MissingPathError
from dr_core.runs import write_trec_frame

log = logging.getLogger("dr_core")


def _add_model_card(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("model-card", help="a saved model's card with its evaluation metrics and reproducing command")
    for name in ("--model", "--out", "--command"):
        s.add_argument(name, required=True)
    s.add_argument("--metrics", nargs="+", required=True, help="the model's metrics JSON files (dr_core evaluate)")
    s.set_defaults(func=_model_card)


def _model_card(a: argparse.Namespace) -> None:
    from dr_core.card_metrics import write_metrics_card

    write_metrics_card(a.model, a.metrics, a.command, a.out)


def _add_push_to_hub(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("push-to-hub", help="upload a model folder to the Hugging Face Hub, its card as README.md")
    for name in ("--model", "--card", "--repo-id", "--out"):
        s.add_argument(name, required=True)
    s.add_argument("--private", action="store_true")
    s.add_argument("--token-env", default="HF_TOKEN", help="the environment variable holding the token")
    s.set_defaults(func=_push_to_hub)


def _push_to_hub(a: argparse.Namespace) -> None:
    from dr_core.hub import push_model

    push_model(a.model, a.card, a.repo_id, a.out, private=a.private, token_env=a.token_env)


def _add_try(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("try", help="search a round's corpus for typed queries (a prompt when none is given)")
    s.add_argument("query", nargs="*")
    s.add_argument("--run-dir", required=True, help="results/<name>")
    s.add_argument("--round", type=int, help="the round searched (not needed for --system bm25)")
    s.add_argument("--dataset", required=True)
    s.add_argument("--model", default="", help="another model folder (default: the round's)")
    s.add_argument("-k", type=int, default=10)
    s.add_argument("--system", choices=["dense", "bm25", "hybrid"], default="dense")
    s.add_argument("--weight", type=float, help="hybrid's dense weight (default: the tuned bm25+round<r>/fusion.json)")
    s.add_argument("--depth", type=int, default=100, help="hybrid: both runs are cut to this depth first")
    s.add_argument("--nprobe", type=int, help="IVF lists searched (default: nlist / 64, as retrieve)")
    s.add_argument("--queries-file", default="", help="a TSV of 'qid<TAB>query' lines instead of typed queries")
    s.add_argument("--out", default="", help="with --queries-file: write the TREC run here instead of printing")
    s.set_defaults(func=_try)


def _try(a: argparse.Namespace) -> None:
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # which CPU build it loads: noise at a prompt
    from dr_core.tryout import (
        RoundSearcher,
        check_corpus,
        check_round,
        check_run_dir,
        format_hits,
        fusion_weight,
        hits_of,
        read_queries_file,
        system_run,
    )

    # every path the command was given, checked before anything loads: one line saying what exists instead
    check_run_dir(a.run_dir)
    if a.system != "bm25":
        if a.round is None:
            raise ValueError(f"--system {a.system} needs --round")
        check_round(a.run_dir, a.round, a.dataset, a.model or None)
    corpus = check_corpus(a.run_dir, a.dataset)
    if a.queries_file and not Path(a.queries_file).is_file():
        raise MissingPathError(f"--queries-file {a.queries_file}: no such file")
    weight = fusion_weight(a.run_dir, a.round, a.weight) if a.system == "hybrid" else None
    t0 = time.time()
    dense = None
    if a.system != "bm25":
        dense = RoundSearcher(a.run_dir, a.round, a.dataset, a.model or None, nprobe=a.nprobe)
        log.info(
            "round %d, %s: %d passages, loaded in %.1f s", a.round, a.dataset, dense.index.ntotal, time.time() - t0
        )
    search = partial(system_run, a.system, corpus=corpus, dense=dense, weight=weight, depth=a.depth)
    if a.queries_file:
        run = search(read_queries_file(a.queries_file), a.k)
        if a.out:
            tag = {"dense": f"round{a.round}", "bm25": "bm25", "hybrid": f"bm25+round{a.round}"}[a.system]
            write_trec_frame(a.out, run, tag)
            log.info("%d queries, %d lines: %s", run["qid"].nunique(), len(run), a.out)
            return
        for qid, ranking in run.groupby("qid", sort=False):
            print(f"\n{qid}\n{format_hits(hits_of(ranking, corpus))}", flush=True)
        return
    if a.out:
        raise ValueError("--out writes the run of a --queries-file")
    for query in a.query or _typed_queries():
        ranking = search(pd.DataFrame({"qid": ["q"], "text": [query]}), a.k)
        print(f"\n{query}\n{format_hits(hits_of(ranking, corpus))}", flush=True)


def _typed_queries() -> Iterator[str]:
    """Queries typed at a prompt, until an empty line or end of input."""
    while True:
        try:
            query = input("query> ").strip()
        except EOFError:
            return
        if not query:
            return
        yield query


def register(sub: argparse._SubParsersAction) -> None:
    """A model's card, its upload to the Hub, and trying a round on typed queries."""
    for add in (_add_model_card, _add_push_to_hub, _add_try):
        add(sub)
