"""Training groups: one query, one positive and `group_size - 1` negatives, sampled statelessly per epoch.

Every draw is keyed by (seed, epoch, position in the epoch), so the data seen at a given step does not depend
on the number of dataloader workers or processes, and a resumed run sees exactly what it would have seen.
"""

from __future__ import annotations

import logging
from collections.abc import Container, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dr_core.tokenization import TokenStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingData:
    """What a round trains on: the queries and the corpus (tokens Parquet files for the bi-encoder, text Parquet
    files for the reranker), the qrels, each query's hard negatives and, for the bi-encoder, the teacher scores
    of distillation and the query clusters of DRO."""

    queries: str | Path
    corpus: str | Path
    qrels: pd.DataFrame
    negatives: dict[str, list[str]]
    teacher_scores: dict[str, dict[str, float]] | None = None
    clusters: dict[str, int] | None = None


@dataclass
class Example:
    qid: str
    positives: list[str]
    negatives: list[str]


def build_examples(
    qrels: pd.DataFrame,
    negatives: dict[str, list[str]],
    queries: Container[str],
    corpus: Container[str],
    skip_top: int = 0,
    topk: int = 0,
) -> list[Example]:
    """One example per judged query with at least one positive in the corpus; unknown negatives are dropped.
    `queries` and `corpus` are what is known of each: token stores, or texts by id.

    Each query's negatives are first cut to the rank window (skip_top, topk] of its list as given (1-based,
    `topk` <= 0: to the end), so `topk` is RetroMAE's `sample_neg_from_topk`.
    """
    if topk > 0 and topk <= skip_top:
        raise ValueError(f"negatives rank window ({skip_top}, {topk}] is empty")
    examples, dropped_negs = [], 0
    rel = qrels[qrels["rel"] > 0]
    for qid, docids in rel.groupby("qid", sort=True)["docid"]:
        pos = [d for d in docids if d in corpus]
        if not pos or qid not in queries:
            continue
        window = negatives.get(qid, [])[skip_top : topk if topk > 0 else None]
        negs = [d for d in window if d in corpus and d not in set(pos)]
        dropped_negs += len(window) - len(negs)
        examples.append(Example(qid, pos, negs))
    if dropped_negs:
        log.warning("dropped %d negatives that are positives or not in the corpus", dropped_negs)
    if not examples:
        raise ValueError("no training query has a positive passage in the corpus")
    return examples


def split_validation(examples: list[Example], n_val: int, seed: int) -> tuple[list[Example], list[Example]]:
    """(train, validation): `n_val` examples held out, chosen by `seed` alone (OpenMatch's val.jsonl idea)."""
    if n_val <= 0:
        return examples, []
    if n_val >= len(examples):
        raise ValueError(f"{n_val} validation queries leave none of {len(examples)} for training")
    held = set(np.random.default_rng([seed, 0x7A1]).permutation(len(examples))[:n_val].tolist())
    train = [ex for i, ex in enumerate(examples) if i not in held]
    return train, [ex for i, ex in enumerate(examples) if i in held]


def keep_scored(examples: list[Example], scores: dict[str, dict[str, float]], need_negatives: bool) -> list[Example]:
    """Examples restricted to passages the teacher scored, so every sampled group has teacher scores.

    Unscored positives and negatives are dropped; a query left without a scored positive, or without a
    scored negative when groups need negatives (random corpus negatives have no teacher score), is dropped.
    """
    out, dropped = [], 0
    for ex in examples:
        known = scores.get(ex.qid, {})
        pos = [d for d in ex.positives if d in known]
        negs = [d for d in ex.negatives if d in known]
        dropped += len(ex.positives) + len(ex.negatives) - len(pos) - len(negs)
        if pos and (negs or not need_negatives):
            out.append(Example(ex.qid, pos, negs))
    if dropped or len(out) < len(examples):
        log.warning("teacher scores: dropped %d unscored passages and %d queries", dropped, len(examples) - len(out))
    if not out:
        raise ValueError("no training query has teacher scores for a positive and a negative")
    return out


class GroupSampler:
    """Deterministic per-epoch order and per-example draws of positive and negatives."""

    def __init__(self, examples: list[Example], num_passages: int, group_size: int, seed: int) -> None:
        if group_size < 1:
            raise ValueError("train.group_size must be at least 1")
        self.examples = examples
        self.num_passages = num_passages
        self.group_size = group_size
        self.seed = seed

    def order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.examples))

    def draw(self, epoch: int, example: int) -> tuple[str, list[str] | list[int]]:
        """(qid, [positive, negatives...]); negatives missing from the file are random corpus rows (ints)."""
        ex = self.examples[example]
        rng = np.random.default_rng([self.seed, epoch, example])
        group: list = [ex.positives[rng.integers(len(ex.positives))]]
        need = self.group_size - 1
        if need and ex.negatives:
            replace = len(ex.negatives) < need
            group += [ex.negatives[i] for i in rng.choice(len(ex.negatives), size=need, replace=replace)]
        elif need:
            group += [int(i) for i in rng.integers(self.num_passages, size=need)]
        return ex.qid, group


class GroupDataset(torch.utils.data.Dataset):
    """Items are positions of one epoch; each yields (query, [passage] * group_size, [qid, *pids]): tokens from
    token stores, or texts from dicts of texts by id (no random corpus negatives then: every group needs its own)."""

    def __init__(self, sampler: GroupSampler, queries: TokenStore | Mapping, corpus: TokenStore | Mapping) -> None:
        self.sampler, self.queries, self.corpus = sampler, queries, corpus
        self.epoch = 0
        self._order = sampler.order(0)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self._order = self.sampler.order(epoch)

    def __len__(self) -> int:
        return len(self._order)

    def __getitem__(self, position: int) -> tuple[np.ndarray, list[np.ndarray], list[str]]:
        qid, group = self.sampler.draw(self.epoch, int(self._order[position]))
        passages = [self.corpus.by_row(p) if isinstance(p, int) else self.corpus[p] for p in group]
        ids = [self.corpus.ids[p] if isinstance(p, int) else p for p in group]
        return self.queries[qid], passages, [qid, *ids]


def rank_batches(num_items: int, batch_size: int, rank: int, world: int, start_step: int = 0) -> list[list[int]]:
    """Positions each optimizer micro-step gives this rank: global batches of `batch_size`, split across ranks.

    The last global batch may be smaller; a rank left with nothing ends the epoch one batch early for all.
    """
    out = []
    for start in range(start_step * batch_size, num_items, batch_size):
        chunk = np.array_split(np.arange(start, min(start + batch_size, num_items)), world)
        if any(len(c) == 0 for c in chunk):
            break
        out.append(chunk[rank].tolist())
    return out


def steps_per_epoch(num_items: int, batch_size: int, world: int) -> int:
    return len(rank_batches(num_items, batch_size, 0, world))
