"""Commands for the bi-encoder: round 0 from a base model, merged and scaled weights, DRO's query clusters, and
training a round. torch and transformers load inside the handlers, so `--help` and the parse stay quick."""

from __future__ import annotations

import argparse
import json

import pandas as pd

from dr_core.atomic import atomic_path
from dr_core.data.formats import read_negatives
from dr_core.settings import settings_from_args

# The card's facts (recipe, base, data, round, negatives, command) are metadata it shows, free-form and growing,
# not settings that change what a step computes: they stay one JSON value instead of flags.
CARD_HELP = "model card facts: one JSON object of free-form metadata (dr_core.model_card), not a setting; '' = no card"


def _add_init_model(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "init-model", help="save a base model as a bi-encoder (round 0)", settings={"": "dr_core.model:EncoderSpec"}
    )
    s.add_argument("--base", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--card", default="", help=CARD_HELP)
    s.set_defaults(func=_init_model)


def _init_model(a: argparse.Namespace) -> None:
    from dr_core.model import BiEncoder, EncoderSpec, load_tokenizer

    spec = settings_from_args(EncoderSpec, a)
    model = BiEncoder.from_base(a.base, spec)
    with atomic_path(a.out, is_dir=True) as tmp:
        model.save(tmp, load_tokenizer(a.base))
        if a.card:
            from dr_core.model_card import write_card

            write_card(tmp, spec, json.loads(a.card))


def _add_merge_models(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("merge-models", help="WiSE-FT: interpolate a trained bi-encoder's weights with its base's")
    s.add_argument("--base", required=True, help="the base bi-encoder folder (round 0)")
    s.add_argument("--tuned", required=True, help="the trained bi-encoder folder (same architecture and spec)")
    s.add_argument("--alpha", type=float, required=True, help="merge.alpha: 0 = the base, 1 = the tuned model")
    s.add_argument("--out", required=True)
    s.set_defaults(func=_merge_models)


def _merge_models(a: argparse.Namespace) -> None:
    from dr_core.merge import merge_models

    merge_models(a.base, a.tuned, a.alpha, a.out)


def _add_scale_t5(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("scale-t5", help="scale a T5's weights as OpenMatch's scale_t5_weights.py (for fp16 training)")
    s.add_argument("--base", required=True, help="a T5 hub name or path (ReLU feed-forward: t5-small/base/large)")
    s.add_argument("--out", required=True)
    s.set_defaults(func=_scale_t5)


def _scale_t5(a: argparse.Namespace) -> None:
    from dr_core.t5 import scale_t5_model

    scale_t5_model(a.base, a.out)


def _add_cluster(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "cluster",
        help="k-means over the train queries' embeddings (DRO groups)",
        settings={"": "dr_core.clustering:ClusterSettings"},
    )
    for name in ("--model", "--query-tokens", "--qrels", "--out"):
        s.add_argument(name, required=True)
    s.set_defaults(func=_cluster)


def _cluster(a: argparse.Namespace) -> None:
    from dr_core.clustering import ClusterSettings, kmeans, write_assignments
    from dr_core.encode import encode_judged_queries

    s = settings_from_args(ClusterSettings, a)
    qids, emb = encode_judged_queries(a.model, a.query_tokens, a.qrels, s.batch_size)
    write_assignments(a.out, qids, kmeans(emb, s.num_clusters, seed=s.seed))


def _add_train(sub: argparse._SubParsersAction) -> None:
    training = {"": "dr_core.train:TrainSettings", "dro": "dr_core.dro:DroSettings"}
    s = sub.add_parser("train", help="train one round", settings=training)
    for name in ("--init", "--queries", "--corpus", "--qrels", "--negatives", "--out", "--log", "--checkpoint-dir"):
        s.add_argument(name, required=True)
    s.add_argument("--teacher-scores", default="", help="Parquet (qid, pid, score) or sentence-transformers .pkl.gz")
    s.add_argument("--clusters", default="", help="query clusters (qid<TAB>cluster) for DRO")
    s.add_argument("--card", default="", help=CARD_HELP)
    s.set_defaults(func=_train)


def _train(a: argparse.Namespace) -> None:
    from dr_core.clustering import read_assignments
    from dr_core.dro import DroSettings
    from dr_core.train import Trainer, TrainSettings
    from dr_core.train_data import TrainingData

    settings = settings_from_args(TrainSettings, a)
    qrels = pd.read_parquet(a.qrels)
    teacher = None
    if a.teacher_scores:
        from dr_core.teacher import read_teacher_scores

        teacher = read_teacher_scores(a.teacher_scores, set(qrels["qid"]))
    dro = settings_from_args(DroSettings, a, "dro")
    clusters = read_assignments(a.clusters) if a.clusters else None
    data = TrainingData(a.queries, a.corpus, qrels, read_negatives(a.negatives), teacher, clusters)
    card = json.loads(a.card) if a.card else None
    trainer = Trainer(a.init, data, settings, a.checkpoint_dir, dro, card)
    trainer.train(a.out, a.log)


def register(sub: argparse._SubParsersAction) -> None:
    """The bi-encoder: round 0 from a base model, the query clusters of DRO, and training a round."""
    for add in (_add_init_model, _add_merge_models, _add_scale_t5, _add_cluster, _add_train):
        add(sub)
