"""A dev split carved from the train queries of a dataset that has none: a seeded share or count of the queries
(all of each query's judgements) leave the train split and form the dev split, used only for choices."""

from __future__ import annotations

import numpy as np
import pandas as pd


def dev_queries(qids: list[str], share: float | None, count: int | None, seed: int) -> set[str]:
    """The queries drawn into the dev split: `count` of them, or round(`share` * len(qids)), seeded; the draw
    depends on the set of query ids only, not on their order. Refuses a split that leaves either side empty."""
    if (share is None) == (count is None):
        raise ValueError("config: set exactly one of data.dev.share and data.dev.count to carve a dev split")
    unique = sorted(set(qids))
    n = count if count is not None else round(share * len(unique))
    key = "data.dev.count" if count is not None else "data.dev.share"
    if n < 1 or n >= len(unique):
        value = count if count is not None else share
        raise ValueError(
            f"config: {key} ({value}) puts {n} of the {len(unique)} train queries in the dev split; both the dev "
            "and the train split need at least one query"
        )
    order = np.random.default_rng(seed).permutation(len(unique))
    return {unique[i] for i in order[:n]}


def carve(qrels: pd.DataFrame, share: float | None, count: int | None, seed: int, keep: str) -> pd.DataFrame:
    """The judgements of the dev queries (`keep` = "dev") or of the queries left to train on ("train")."""
    if keep not in ("dev", "train"):
        raise ValueError(f"keep must be 'dev' or 'train', not {keep!r}")
    dev = dev_queries(qrels["qid"].tolist(), share, count, seed)
    in_dev = qrels["qid"].isin(dev)
    return qrels[in_dev if keep == "dev" else ~in_dev].reset_index(drop=True)
