"""The cross-encoder reranker: training on a round's groups, saving for sentence-transformers, re-scoring runs.

A reranker is a cross-encoder (`dr_core.cross_encoder`: the pairs it reads, its score, how it is saved) with
one label built from any base (a BERT gets a fresh linear head). It is trained, as FlagEmbedding's and
Tevatron's rerankers are, with a listwise softmax cross-entropy over each group (the positive at index 0, then
hard negatives), on the generic loop of `dr_core.train_loop` (checkpoints, exact resume, DDP).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from dr_core.checkpoint import inputs_digest
from dr_core.cross_encoder import candidates, cross_encoder_scores, load_cross_encoder, load_texts, save_cross_encoder
from dr_core.device import autocast
from dr_core.model import resolve_model_path
from dr_core.model_card import write_reranker_card
from dr_core.runs import rank_order, sorted_codes
from dr_core.settings import setting
from dr_core.templates import PASSAGE_TEMPLATE
from dr_core.train_data import Example, GroupDataset, GroupSampler, TrainingData, build_examples, split_validation
from dr_core.train_loop import LoopSettings, Runtime, TrainLoop, start_runtime

log = logging.getLogger(__name__)


@dataclass
class RerankerSettings(LoopSettings):
    """Training settings of the reranker (the `reranker` section of workflow/schemas/config.schema.yaml)."""

    config_key: ClassVar[str] = "reranker"

    batch_size: int = setting(8, "queries per micro-batch, over all processes; each brings group_size pairs")
    group_size: int = setting(8, "passages per query: 1 positive + group_size-1 hard negatives")
    lr: float = setting(2.0e-5, "peak learning rate")
    max_len: int = setting(256, "tokens of a (query, passage) pair, special tokens included")
    checkpoint_every: int = setting(200, "optimizer steps between checkpoints; 0 disables")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.group_size < 2:
            raise ValueError("reranker.group_size must be at least 2 (a positive and a negative)")


def reranker_examples(
    qrels: pd.DataFrame,
    negatives: dict[str, list[str]],
    query_text: dict[str, str],
    passage_text: dict[str, str],
) -> list[Example]:
    """Train queries with a positive and at least one hard negative whose texts are known."""
    examples = [ex for ex in build_examples(qrels, negatives, query_text, passage_text) if ex.negatives]
    if not examples:
        raise ValueError("no training query has a positive and a hard negative for the reranker")
    return examples


class CrossEncoderTask:
    """The cross-encoder on the training loop: text groups, listwise cross-entropy, a `save_pretrained` folder."""

    loss_scale = 1  # each process's loss is its own groups' (no cross-device gathering)

    def __init__(
        self,
        base: str,
        query_text: dict[str, str],
        passage_text: dict[str, str],
        examples: list[Example],
        settings: RerankerSettings,
        runtime: Runtime,
        template: str = "",
    ) -> None:
        self.settings, self.runtime = settings, runtime
        self.base, self.template = base, template  # for the model card
        model, self.tokenizer = load_cross_encoder(base)
        self.model = model.to(runtime.device)
        if settings.gradient_checkpointing:
            self.model.gradient_checkpointing_enable()
        train, val = split_validation(examples, settings.validation_size(len(examples)), settings.seed)
        self.dataset = self._dataset(train, query_text, passage_text)
        self.val_dataset = self._dataset(val, query_text, passage_text) if val else None

    def _dataset(self, examples: list[Example], queries: dict[str, str], passages: dict[str, str]) -> GroupDataset:
        sampler = GroupSampler(examples, len(passages), self.settings.group_size, self.settings.seed)
        return GroupDataset(sampler, queries, passages)  # items: (query text, [passage texts], ids)

    def collate(self, items: list) -> tuple[dict[str, torch.Tensor], list[list[str]]]:
        """Items -> (tokenized pairs, query by query, positive first; ids)."""
        queries = [q for q, ps, _ in items for _ in ps]
        passages = [p for _, ps, _ in items for p in ps]
        enc = self.tokenizer(
            queries,
            passages,
            truncation="only_second",
            max_length=self.settings.max_len,
            padding=True,
            return_tensors="pt",
        )
        return dict(enc), [ids for _, _, ids in items]

    def loss(self, net: torch.nn.Module, inputs: dict, ids: list[list[str]], local: bool = False) -> torch.Tensor:
        """Listwise softmax cross-entropy: each group's logits [G], the positive (index 0) the target."""
        with autocast(self.runtime.precision, self.runtime.device):
            logits = net(**inputs).logits
        scores = logits.float().view(len(ids), -1)  # [B, G]
        return F.cross_entropy(scores, torch.zeros(len(ids), dtype=torch.long, device=scores.device))

    def state_dict(self) -> None:
        return None

    def load_state_dict(self, state: None) -> None:
        pass

    def log_columns(self) -> dict[str, float]:
        return {}

    def save(self, folder: Path) -> None:
        save_cross_encoder(self.model, self.tokenizer, folder, self.settings.max_len)
        write_reranker_card(folder, self.base, self.template, asdict(self.settings))


class RerankerTrainer(TrainLoop):
    """Train a cross-encoder from `base` on the groups of a round's negatives file (`data`: text Parquet files,
    passages written by `template`; no teacher scores or clusters)."""

    def __init__(
        self,
        base: str,
        data: TrainingData,
        template: str,
        settings: RerankerSettings,
        checkpoint_dir: str | Path,
    ) -> None:
        if data.teacher_scores is not None or data.clusters is not None:
            raise ValueError("the reranker trains without teacher scores or query clusters")
        runtime = start_runtime(settings)
        qrels, negatives = data.qrels, data.negatives
        query_text, passage_text = load_texts(data.queries, data.corpus, candidates(qrels, negatives), template)
        examples = reranker_examples(qrels, negatives, query_text, passage_text)
        log.info("reranker: %d training queries", len(examples))
        task = CrossEncoderTask(base, query_text, passage_text, examples, settings, runtime, template)
        data = {"examples": [(ex.qid, ex.positives, ex.negatives) for ex in examples], "template": template}
        super().__init__(task, settings, runtime, checkpoint_dir, inputs_digest(resolve_model_path(base), data))


@dataclass(frozen=True)
class RerankSettings:
    """How the cross-encoder re-scores a run (the recipe's reranker.score_batch_size and max_len, and the passage
    template model.passage_template)."""

    template: str = setting(PASSAGE_TEMPLATE, "passage text from its title and text")
    batch_size: int = setting(64, "pairs per forward pass")
    max_len: int = setting(RerankerSettings.max_len, "pair length")


def rerank(
    run: pd.DataFrame,
    model: str,
    query_text: dict[str, str],
    passage_text: dict[str, str],
    depth: int,
    batch_size: int,
    max_len: int,
) -> pd.DataFrame:
    """The run (qid, docid, rank, score) with each query's top `depth` re-scored by the cross-encoder and
    re-sorted; the documents below keep their order, scored below the reranked ones.

    The one place whose ties differ from dr_core.runs' rule (rounded score, then doc id descending): the rows are
    put in `rank_order` of the unrounded cross-encoder scores with the first stage's order as the tie key, so equal
    scores (and scores that round to the same written value) keep the first stage's order. Evaluation is unaffected
    (pytrec_eval re-ranks a run's ties by doc id); the written ranks of such ties can differ from trec_eval's."""
    head = run[run["rank"] <= depth]
    missing = sorted(set(head["qid"]) - query_text.keys())
    if missing:
        raise ValueError(f"{len(missing)} queries of the run have no text, e.g. '{missing[0]}'")
    pairs = [(query_text[q], passage_text[d]) for q, d in zip(head["qid"], head["docid"])]
    head = head.assign(score=cross_encoder_scores(model, pairs, batch_size, max_len).astype(float))
    floor = head.groupby("qid")["score"].min()
    tail = run[run["rank"] > depth]
    tail = tail.assign(score=tail["qid"].map(floor).fillna(0.0) - (tail["rank"] - depth).astype(float))
    both = pd.concat([head, tail])
    first_stage = -np.arange(len(both))  # earlier rows (head in run order, then tail) win a tie
    out = both.iloc[rank_order(both["score"].to_numpy(np.float64), first_stage, sorted_codes(both["qid"]))]
    return out.assign(rank=out.groupby("qid").cumcount() + 1).reset_index(drop=True)
