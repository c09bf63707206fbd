"""False negatives out of mined negatives: drop a negative that the teacher scores close to the positive.

RocketQA's denoising keeps a mined negative only when a cross-encoder is confident it is not relevant;
sentence-transformers' `mine_hard_negatives` does the same with `absolute_margin` and `max_score`. Here a
negative of query q is dropped when the teacher scores it within `margin` of q's weakest judged positive
(`score(neg) > min(score(pos)) - margin`), or above `max_score`. Negatives the teacher did not score are kept.
"""

from __future__ import annotations

from dataclasses import dataclass

from dr_core.settings import setting


@dataclass(frozen=True)
class DenoiseSettings:
    """Which negatives are dropped (the recipe's negatives.denoise.margin and max_score; both null: none)."""

    margin: float | None = setting(None, "drop if score > weakest positive's - margin")
    max_score: float | None = setting(None, "drop if score > this")


@dataclass(frozen=True)
class DenoiseStats:
    queries: int
    kept: int
    dropped: int
    unscored: int

    @property
    def dropped_fraction(self) -> float:
        return self.dropped / max(1, self.kept + self.dropped)


def denoise(
    negatives: dict[str, list[str]],
    positives: dict[str, set[str]],
    scores: dict[str, dict[str, float]],
    margin: float | None,
    max_score: float | None = None,
) -> tuple[dict[str, list[str]], DenoiseStats]:
    """(negatives kept, in their order; counts). A query whose positives have no score keeps its list."""
    if margin is not None and margin < 0:
        raise ValueError(f"negatives.denoise.margin must be >= 0, not {margin}")
    out: dict[str, list[str]] = {}
    kept = dropped = unscored = 0
    for qid, pids in negatives.items():
        known = scores.get(qid, {})
        pos_scores = [known[p] for p in positives.get(qid, ()) if p in known]
        ceiling = min(pos_scores) - margin if (pos_scores and margin is not None) else float("inf")
        if max_score is not None:
            ceiling = min(ceiling, max_score)
        keep = []
        for pid in pids:
            if pid not in known:
                unscored += 1
                keep.append(pid)
            elif known[pid] <= ceiling:
                keep.append(pid)
        dropped += len(pids) - len(keep)
        kept += len(keep)
        out[qid] = keep
    return out, DenoiseStats(len(negatives), kept, dropped, unscored)
