"""Choices made on dev: the selected round (best dev figure, ties to the earlier round) and whether to train
another round (the stopping rule of `ance.rounds: {max, patience, min_delta}`)."""

from __future__ import annotations

import json
from pathlib import Path


def dev_values(metric_files: list[str | Path], metric: str) -> list[float]:
    """The dev figure of rounds 0..r from their metrics files, given in round order (round<r> systems)."""
    values = []
    for expected, path in enumerate(metric_files):
        record = json.loads(Path(path).read_text())
        if record["system"] != f"round{expected}":
            raise ValueError(
                f"{path}: holds {record['system']}'s metrics, expected round{expected}'s (files in round order)"
            )
        if metric not in record["metrics"]:
            raise ValueError(f"{path}: no {metric} (eval.select_metric); it has {sorted(record['metrics'])}")
        values.append(float(record["metrics"][metric]))
    return values


def select_round(values: list[float]) -> int:
    """The round with the best dev figure; the earlier round on a tie."""
    if not values:
        raise ValueError("no rounds to select from")
    return max(range(len(values)), key=lambda r: (values[r], -r))


def improved(values: list[float], r: int, min_delta: float) -> bool:
    """Whether round r beat every round before it by more than `min_delta`."""
    return r >= 1 and values[r] > max(values[:r]) + min_delta


def keep_training(values: list[float], max_rounds: int, patience: int, min_delta: float) -> bool:
    """Whether to train round r + 1 after rounds 0..r (r = len(values) - 1): below `max_rounds`, and fewer than
    `patience` rounds since the last one that improved (round 0, the base model, is where the count starts)."""
    r = len(values) - 1
    if r >= max_rounds:
        return False
    last = max(i for i in range(r + 1) if i == 0 or improved(values, i, min_delta))
    return r - last < patience
