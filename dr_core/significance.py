"""Significance of the summary: paired t-tests of each system against baselines, Holm-corrected per target.

For one baseline, one target (dataset, split) and one metric, every other system of that target is tested
against the baseline over the queries both have per-query scores for (the qrels' queries), and the p-values
of that family are adjusted with Holm's step-down method.
"""

from __future__ import annotations

import json
import math
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import ttest_rel

from dr_core.settings import setting

# (system, dataset, split) -> {qid: {metric: value}}
PerQuery = Mapping[tuple[str, str, str], Mapping[str, Mapping[str, float]]]


@dataclass(frozen=True)
class SignificanceSettings:
    """Where a system is marked better or worse than a baseline (the recipe's eval.alpha): summarize and compare."""

    alpha: float = setting(0.05, "significance level: a mark where the Holm-adjusted p < alpha")


TEST = "paired t-test, two-sided, Holm-corrected over the systems of each target"


def paired_pvalue(system: Sequence[float], baseline: Sequence[float]) -> float | None:
    """Two-sided paired t-test p-value (scipy's ttest_rel); 1.0 when the differences have zero variance
    (identical scores), None for fewer than 2 pairs."""
    x, y = np.asarray(system, dtype=float), np.asarray(baseline, dtype=float)
    if len(x) != len(y):
        raise ValueError(f"paired test needs equal lengths, got {len(x)} and {len(y)}")
    if len(x) < 2:
        return None
    if np.ptp(x - y) <= 1e-12:
        return 1.0
    return float(ttest_rel(x, y).pvalue)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment, in the input order: the i-th smallest p becomes
    max over j <= i of min(1, (m - j) * p_j) (j from 0)."""
    m = len(pvalues)
    adjusted = [0.0] * m
    running = 0.0
    for j, i in enumerate(sorted(range(m), key=lambda k: pvalues[k])):
        running = max(running, min(1.0, (m - j) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def load_per_query(paths: Sequence[str | Path]) -> dict[tuple[str, str, str], dict[str, dict[str, float]]]:
    """Per-query scores of metrics JSON files by (system, dataset, split); {} for a file without them."""
    scores = {}
    for path in paths:
        m = json.loads(Path(path).read_text())
        scores[(m["system"], m["dataset"], m["split"])] = m.get("per_query", {})
    return scores


def check_baselines(
    summary: pd.DataFrame, baselines: Sequence[str], setting: str = "eval.baselines (--baselines)"
) -> None:
    """A baseline must be a system of at least one target; `setting` names where the baselines came from."""
    systems = list(dict.fromkeys(summary["system"]))
    missing = [b for b in baselines if b not in systems]
    if missing:
        raise ValueError(f"{setting} names {missing}, not among the systems {systems}")
    if len(baselines) > len(string.ascii_lowercase):
        raise ValueError(f"{setting}: at most {len(string.ascii_lowercase)} baselines, got {len(baselines)}")


def pvalue_columns(summary: pd.DataFrame, per_query: PerQuery, baselines: Sequence[str], metric: str) -> pd.DataFrame:
    """`p_vs_<baseline>` per summary row: the Holm-adjusted p-value of `metric` against that baseline; NaN for
    the baseline itself, where the target lacks the baseline, or without per-query scores."""
    out = pd.DataFrame(np.nan, index=summary.index, columns=[f"p_vs_{b}" for b in baselines])
    for (dataset, split), rows in summary.groupby(["dataset", "split"], sort=False):
        for b in baselines:
            if b not in set(rows["system"]):
                continue
            base = per_query.get((b, dataset, split), {})
            raw = {}
            for idx, system in rows["system"].items():
                if system == b:
                    continue
                scores = per_query.get((system, dataset, split), {})
                qids = [q for q in base if q in scores and metric in base[q] and metric in scores[q]]
                p = paired_pvalue([scores[q][metric] for q in qids], [base[q][metric] for q in qids])
                if p is not None:
                    raw[idx] = p
            for idx, p in zip(raw, holm(list(raw.values()))):
                out.loc[idx, f"p_vs_{b}"] = p
    return out


def format_p(p: float) -> str:
    """4 significant digits; empty for a missing p-value."""
    return "" if p is None or (isinstance(p, float) and math.isnan(p)) else f"{p:.4g}"


def marks(summary: pd.DataFrame, pvalues: pd.DataFrame, metric: str, alpha: float) -> pd.Series:
    """Per summary row, ` a+ b-`...: a letter per baseline (the p_vs_ columns' order) where the adjusted p < alpha,
    `+` when the system's `metric` is above that baseline's on the target, `-` below; '' when none."""
    text = pd.Series("", index=summary.index, dtype=object)
    value = summary.set_index(["system", "dataset", "split"])[metric]
    value = value[~value.index.duplicated()]
    for letter, column in zip(string.ascii_lowercase, pvalues.columns):
        baseline = column.removeprefix("p_vs_")
        for idx, p in pvalues[column].items():
            if pd.isna(p) or p >= alpha:
                continue
            row = summary.loc[idx]
            diff = row[metric] - value.get((baseline, row["dataset"], row["split"]), np.nan)
            if diff > 0 or diff < 0:
                text[idx] += f" {letter}{'+' if diff > 0 else '-'}"
    return text


def marked_values(summary: pd.DataFrame, metric: str, mark: pd.Series, digits: int = 4) -> pd.Series:
    """`metric` as text, its marks appended (`0.7618 a+ b+`); NaN stays NaN."""
    text = summary[metric].map(lambda v: f"{v:.{digits}f}") + mark
    return text.where(summary[metric].notna())


def legend(metric: str, baselines: Sequence[str], alpha: float, columns: bool = True) -> str:
    """The line explaining the marks (and, with `columns`, the p_vs_ columns)."""
    letters = ", ".join(f"{letter} = {b}" for letter, b in zip(string.ascii_lowercase, baselines))
    what = f"{TEST}; p_vs_<baseline>: the adjusted p-values" if columns else TEST
    return (
        f"Marks after {metric}: {letters}; + better, - worse than that baseline at adjusted p < alpha = {alpha:g} "
        f"({what})."
    )
