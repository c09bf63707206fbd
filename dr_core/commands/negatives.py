"""Commands for hard negatives: mined from a run, read from a file, scored by a teacher, denoised."""

from __future__ import annotations

import argparse
import logging

import pandas as pd

from dr_core.data.formats import read_negatives, write_negatives
from dr_core.data.msmarco.toolkits import read_negatives_file
from dr_core.denoise import DenoiseSettings, denoise
from dr_core.negatives import MineSettings, mine_negatives, positives_by_query
from dr_core.positive_scores import weakest_positive, write_scores
from dr_core.runs import iter_run, iter_run_scores
from dr_core.settings import settings_from_args

log = logging.getLogger("dr_core")
# torch, transformers, bm25s load inside the handlers that use them: the other commands start without them.


def _add_mine(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("mine", help="sample hard negatives from a run", settings={"": "dr_core.negatives:MineSettings"})
    for name in ("--run", "--qrels", "--out"):
        s.add_argument(name, required=True)
    s.add_argument("--bm25-run", help="BM25 run of the same queries (with --bm25-fraction > 0)")
    s.add_argument("--positive-scores", help="qid, docid, score of the judged positives under the mining model")
    s.set_defaults(func=_mine)


def _mine(a: argparse.Namespace) -> None:
    negatives = mine_negatives(
        iter_run_scores(a.run),  # read a query at a time
        pd.read_parquet(a.qrels),
        settings_from_args(MineSettings, a),
        iter_run(a.bm25_run) if a.bm25_run else None,
        weakest_positive(a.positive_scores) if a.positive_scores else None,
    )
    write_negatives(negatives, a.out)


def _add_positive_scores(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("positive-scores", help="a bi-encoder's score of each judged positive (for the mine filter)")
    for name in ("--model", "--query-tokens", "--qrels", "--out"):
        s.add_argument(name, required=True)
    s.add_argument("--shards", nargs="+", required=True, help="corpus shards as pairs: emb.npy ids.txt ...")
    s.add_argument("--max-len", type=int, default=0, help="query length (0: the model's)")
    s.set_defaults(func=_positive_scores)


def _positive_scores(a: argparse.Namespace) -> None:
    from dr_core.positive_scores import dense_pair_scores

    shards = list(zip(a.shards[::2], a.shards[1::2]))
    write_scores(dense_pair_scores(a.model, a.query_tokens, a.qrels, shards, a.max_len or None), a.out)


def _add_positive_scores_bm25(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "positive-scores-bm25",
        help="BM25's score of each judged positive (for the mine filter)",
        settings={"": "dr_core.bm25:Bm25Settings"},
    )
    for name in ("--corpus", "--queries", "--qrels", "--out"):
        s.add_argument(name, required=True)
    s.set_defaults(func=_positive_scores_bm25)


def _positive_scores_bm25(a: argparse.Namespace) -> None:
    from dr_core.bm25 import Bm25Settings
    from dr_core.positive_scores import bm25_positive_scores

    scores = bm25_positive_scores(a.corpus, a.queries, a.qrels, settings_from_args(Bm25Settings, a))
    write_scores(scores, a.out)


def _add_negatives_file(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "negatives-file",
        help="round-1 negatives from a given file: qid<TAB>pid,pid,..., Tevatron train jsonl or sentence-transformers "
        "hard negatives jsonl.gz",
    )
    s.add_argument("--src", required=True)
    s.add_argument("--out", required=True)
    s.set_defaults(func=_negatives_file)


def _negatives_file(a: argparse.Namespace) -> None:
    write_negatives(read_negatives_file(a.src), a.out)


def _add_teacher_scores(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "teacher-scores",
        help="score each train query's positives and negatives with a teacher",
        settings={"": "dr_core.teacher:TeacherSettings"},
    )
    for name in ("--model", "--queries", "--corpus", "--qrels", "--negatives", "--out"):
        s.add_argument(name, required=True)
    s.add_argument("--model-key", default="distill.teacher", help="the config key of --model, for errors")
    s.set_defaults(func=_teacher_scores)


def _teacher_scores(a: argparse.Namespace) -> None:
    from dr_core.cross_encoder import candidates, load_texts
    from dr_core.teacher import TeacherSettings, score_candidates, teacher_kind, write_teacher_scores

    t = settings_from_args(TeacherSettings, a)
    kind = teacher_kind(a.model, t.kind, a.model_key)  # a clear error before any work
    groups = candidates(pd.read_parquet(a.qrels), read_negatives(a.negatives))
    query_text, passage_text = load_texts(a.queries, a.corpus, groups, t.template)
    scores = score_candidates(a.model, groups, query_text, passage_text, kind, t.batch_size, t.q_max_len, t.max_len)
    log.info("teacher %s: %d scores for %d queries", a.model, len(scores), scores["qid"].nunique())
    write_teacher_scores(scores, a.out, {"teacher": a.model, "kind": t.kind, "template": t.template})


def _add_denoise(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "denoise",
        help="drop negatives the teacher scores within a margin of the positive",
        settings={"": "dr_core.denoise:DenoiseSettings"},
    )
    for name in ("--negatives", "--teacher-scores", "--qrels", "--out"):
        s.add_argument(name, required=True)
    s.set_defaults(func=_denoise)


def _denoise(a: argparse.Namespace) -> None:
    from dr_core.teacher import read_teacher_scores

    s = settings_from_args(DenoiseSettings, a)
    positives = positives_by_query(pd.read_parquet(a.qrels))
    kept, stats = denoise(
        read_negatives(a.negatives), positives, read_teacher_scores(a.teacher_scores), s.margin, s.max_score
    )
    log.info(
        "denoised %d queries: kept %d negatives, dropped %d (%.1f%%), %d had no teacher score",
        stats.queries, stats.kept, stats.dropped, 100 * stats.dropped_fraction, stats.unscored,
    )  # fmt: skip
    write_negatives(kept, a.out)


def register(sub: argparse._SubParsersAction) -> None:
    """Hard negatives: mined from a run, read from a file, denoised with teacher scores."""
    adds = (_add_mine, _add_positive_scores, _add_positive_scores_bm25, _add_negatives_file, _add_teacher_scores)
    for add in (*adds, _add_denoise):
        add(sub)
