"""Hard negatives: sampling them from a ranking, and the filter of likely false negatives (the file they are
written to, `qid<TAB>pid,pid,...`, is `dr_core.data.formats`' read_negatives / write_negatives)."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dr_core.settings import required, setting

log = logging.getLogger(__name__)
ScoredRun = Iterable[tuple[str, list[str], list[int], list[float]]]  # (qid, docids, ranks, scores) per query


@dataclass(frozen=True)
class MineSettings:
    """A mine step's settings: the rank window sampled (negatives.mine for round r >= 2, negatives.first_stage for
    round 1, whose defaults differ: required here), the false-negative filter, and a share of BM25 negatives."""

    rank_min: int = required("best rank sampled (1 = the top)")
    rank_max: int = required("worst rank sampled")
    n: int = required("negatives kept per query (<= 0: the whole window)")
    seed: int = setting(42, "seed of the sample (negatives.seed)")
    bm25_fraction: float = setting(0.0, "share of the n negatives from the BM25 run's window (0: none)")
    bm25_rank_min: int = setting(1, "best rank of the BM25 window (negatives.first_stage.rank_min)")
    bm25_rank_max: int = setting(100, "worst rank of the BM25 window (negatives.first_stage.rank_max)")
    filter_relative: float | None = setting(None, "drop candidates scored above this times the weakest positive")
    filter_margin: float | None = setting(None, "drop candidates scored within this of the weakest positive")

    @property
    def mixes_bm25(self) -> bool:
        """Whether a share of the negatives comes from BM25's window (then a BM25 run is needed)."""
        return self.bm25_fraction > 0

    @property
    def filters(self) -> bool:
        """Whether candidates near the weakest positive are dropped (then the positives' scores are needed)."""
        return self.filter_relative is not None or self.filter_margin is not None


def positives_by_query(qrels: pd.DataFrame) -> dict[str, set[str]]:
    """qid -> its judged positive docids (rel > 0)."""
    return qrels[qrels["rel"] > 0].groupby("qid")["docid"].agg(set).to_dict()


def _rng(seed: int, qid: str) -> np.random.Generator:
    """A generator per (seed, query), so a query's sample does not depend on the others."""
    digest = int.from_bytes(hashlib.blake2b(qid.encode(), digest_size=8).digest(), "little")
    return np.random.default_rng([seed, digest])


RunGroups = Iterable[tuple[str, list[str], list[int]]]


def run_groups(run: pd.DataFrame) -> RunGroups:
    """(qid, docids, ranks) per query of a run held as a DataFrame, in its row order."""
    for qid, group in run.groupby("qid", sort=False):
        yield qid, group["docid"].tolist(), group["rank"].tolist()


def mine(
    run: pd.DataFrame | RunGroups,
    qrels: pd.DataFrame,
    rank_min: int,
    rank_max: int,
    n: int,
    seed: int,
    drop: dict[str, set[str]] | None = None,
) -> dict[str, list[str]]:
    """For each judged query: up to `n` docs sampled from ranks [rank_min, rank_max] with positives removed, and
    the query's `drop` set (likely false negatives, see `near_positive`).

    `run` is a DataFrame or (qid, docids, ranks) groups, such as `runs.iter_run` streams from a file. Ranks count
    the run's own order (1 = best). The sample keeps rank order. `n` <= 0 keeps the whole window.
    """
    if rank_min < 1 or rank_max < rank_min:
        raise ValueError(f"rank window [{rank_min}, {rank_max}] is empty")
    positives = positives_by_query(qrels)
    out: dict[str, list[str]] = {}
    for qid, docids, ranks in run_groups(run) if isinstance(run, pd.DataFrame) else run:
        if qid not in positives:
            continue
        window = [d for d, r in zip(docids, ranks) if rank_min <= r <= rank_max]
        if window:
            skip = positives[qid] | (drop or {}).get(qid, set())
            cands = [d for d in window if d not in skip]
            out[qid] = _sample(cands, n, _rng(seed, qid)) if n > 0 else cands
    return out


def near_positive(
    docids: list[str], scores: list[float], weakest: float, relative: float | None, margin: float | None
) -> set[str]:
    """A query's likely false negatives: the ranked docs the mining model scores too close to the query's weakest
    judged positive to be trusted as negatives, above `relative` times its score (NV-Retriever's TopK-PercPos,
    relative 0.95) or within `margin` of it (score > positive - margin), whichever threshold is lower. Both are
    meant for scores that are positive for related text (cosine, BM25)."""
    if relative is None and margin is None:
        raise ValueError("near_positive needs relative or margin")
    if relative is not None and not 0 < relative <= 1:
        raise ValueError(f"negatives.*.filter.relative must be in (0, 1], not {relative}")
    limits = [relative * weakest] if relative is not None else []
    limits += [weakest - margin] if margin is not None else []
    return {d for d, s in zip(docids, scores) if s > min(limits)}


def _sample(cands: list[str], k: int, rng: np.random.Generator) -> list[str]:
    """`k` of `cands` drawn without replacement, kept in their order (all of them when k >= len(cands))."""
    if k <= 0:
        return []
    if k >= len(cands):
        return list(cands)
    return [cands[i] for i in np.sort(rng.choice(len(cands), size=k, replace=False))]


def mix_negatives(
    mined: dict[str, list[str]], bm25: dict[str, list[str]], n: int, bm25_fraction: float, seed: int
) -> dict[str, list[str]]:
    """Up to `n` negatives per query: round(n * bm25_fraction) drawn from `bm25`'s candidates, the rest from `mined`'s.

    Both inputs are whole candidate windows with positives removed (`mine(..., n=0)`). The mined share is drawn
    first, with `mine`'s random stream (fraction 0 gives `mine`'s sample, fraction 1 BM25's), then the BM25 share
    from the BM25 candidates not drawn already, so no document appears twice; a pool smaller than its share gives
    fewer. The mined picks come first, each share in rank order.
    """
    if n <= 0:
        raise ValueError(f"mixing BM25 and mined negatives needs n > 0 (negatives.mine.n), got {n}")
    if not 0.0 <= bm25_fraction <= 1.0:
        raise ValueError(f"negatives.mine.bm25_fraction must be in [0, 1], got {bm25_fraction}")
    n_bm25 = round(n * bm25_fraction)
    out: dict[str, list[str]] = {}
    for qid in dict.fromkeys([*mined, *bm25]):
        rng = _rng(seed, qid)
        picked = _sample(mined.get(qid, []), n - n_bm25, rng)
        taken = set(picked)
        pool = [d for d in bm25.get(qid, []) if d not in taken]
        out[qid] = picked + _sample(pool, n_bm25, rng)
    return out


def mine_negatives(
    run: ScoredRun,
    qrels: pd.DataFrame,
    settings: MineSettings,
    bm25_run: RunGroups | None = None,
    weakest: dict[str, float] | None = None,
) -> dict[str, list[str]]:
    """The mine step: each judged query's negatives from `run`'s window, less the candidates the filter drops
    (scored near the query's `weakest` positive), a `settings.bm25_fraction` share of them from `bm25_run`'s
    window. `run` is read once, a query at a time (`runs.iter_run_scores`)."""
    s = settings
    if s.filters and weakest is None:
        raise ValueError("--filter-relative/--filter-margin need --positive-scores")
    if s.mixes_bm25 and bm25_run is None:
        raise ValueError("--bm25-fraction > 0 needs --bm25-run")
    drop: dict[str, set[str]] = {}
    window: dict[str, int] = {}  # per filtered query, the drops inside the sampled window

    def groups() -> Iterator[tuple[str, list[str], list[int]]]:
        for qid, docids, ranks, scores in run:
            if s.filters and qid in weakest:  # filled before `mine` reads the query's drops
                drop[qid] = near_positive(docids, scores, weakest[qid], s.filter_relative, s.filter_margin)
                window[qid] = sum(s.rank_min <= r <= s.rank_max and d in drop[qid] for d, r in zip(docids, ranks))
            yield qid, docids, ranks

    if s.mixes_bm25:
        mined = mine(groups(), qrels, s.rank_min, s.rank_max, 0, s.seed, drop)
        bm25 = mine(bm25_run, qrels, s.bm25_rank_min, s.bm25_rank_max, 0, s.seed)
        negatives = mix_negatives(mined, bm25, s.n, s.bm25_fraction, s.seed)
    else:
        negatives = mine(groups(), qrels, s.rank_min, s.rank_max, s.n, s.seed, drop)
    if s.filters:
        log.info(
            "filter (relative %s, margin %s): %d of the window's candidates dropped over %d queries (%.2f per query, "
            "%d queries lost at least one)",
            s.filter_relative, s.filter_margin, sum(window.values()), len(window),
            sum(window.values()) / max(1, len(window)), sum(v > 0 for v in window.values()),
        )  # fmt: skip
    log.info(
        "negatives for %d queries, %.1f per query",
        len(negatives),
        sum(map(len, negatives.values())) / max(1, len(negatives)),
    )
    return negatives
