"""Commands for the cross-encoder: training it and re-scoring the top of a run. torch and transformers load inside
the handlers."""

from __future__ import annotations

import argparse

import pandas as pd

from dr_core.data.formats import read_negatives
from dr_core.runs import read_trec, write_trec_frame
from dr_core.settings import settings_from_args
from dr_core.templates import PASSAGE_TEMPLATE


def _add_train_reranker(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "train-reranker",
        help="train a cross-encoder on a round's groups (listwise cross-entropy)",
        settings={"": "dr_core.reranker:RerankerSettings"},
    )
    for name in ("--base", "--queries", "--corpus", "--qrels", "--negatives", "--out", "--log", "--checkpoint-dir"):
        s.add_argument(name, required=True)
    s.add_argument("--template", default=PASSAGE_TEMPLATE)
    s.set_defaults(func=_train_reranker)


def _train_reranker(a: argparse.Namespace) -> None:
    from dr_core.reranker import RerankerSettings, RerankerTrainer
    from dr_core.train_data import TrainingData

    settings = settings_from_args(RerankerSettings, a)
    data = TrainingData(a.queries, a.corpus, pd.read_parquet(a.qrels), read_negatives(a.negatives))
    trainer = RerankerTrainer(a.base, data, a.template, settings, a.checkpoint_dir)
    trainer.train(a.out, a.log)


def _add_rerank(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "rerank",
        help="re-score the top of a run with a cross-encoder",
        settings={"": "dr_core.reranker:RerankSettings"},
    )
    for name in ("--model", "--run", "--queries", "--corpus", "--out", "--tag"):
        s.add_argument(name, required=True)
    s.add_argument("--depth", type=int, required=True, help="documents re-scored per query")
    s.add_argument("--model-key", default="reranker.model", help="the config key of --model, for errors")
    s.set_defaults(func=_rerank)


def _rerank(a: argparse.Namespace) -> None:
    from dr_core.cross_encoder import load_texts, require_cross_encoder
    from dr_core.reranker import RerankSettings, rerank

    s = settings_from_args(RerankSettings, a)
    require_cross_encoder(a.model, a.model_key)
    run = read_trec(a.run)
    groups = run[run["rank"] <= a.depth].groupby("qid")["docid"].agg(list).to_dict()
    query_text, passage_text = load_texts(a.queries, a.corpus, groups, s.template)
    reranked = rerank(run, a.model, query_text, passage_text, a.depth, s.batch_size, s.max_len)
    write_trec_frame(a.out, reranked, a.tag)


def register(sub: argparse._SubParsersAction) -> None:
    """The cross-encoder: training it and re-scoring the top of a run."""
    for add in (_add_train_reranker, _add_rerank):
        add(sub)
