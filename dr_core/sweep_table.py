"""A sweep's comparison (`results/<name>/sweep.tsv`): each variant's `selected` round (chosen on dev), its dev
figure, its figures on every evaluation target, and the paired t-test of its difference from the base variant
there (Holm over the variants of each target: `dr_core.significance`, as the summary tests its systems). The
best variant is the one with the best dev figure (ties to the earlier variant); the test figures never choose.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from dr_core.compare import tested_metric
from dr_core.significance import marked_values, marks, pvalue_columns

BEST = "best"


def read_choice(path: str | Path) -> dict:
    """A variant's choice (select-round's output): the selected round, the metric, the dev figure of each round."""
    choice = json.loads(Path(path).read_text())
    for key in ("round", "metric", "dev"):
        if key not in choice:
            raise ValueError(f"{path}: a round choice needs '{key}' (select-round's output)")
    return choice


def sweep_table(
    variants: Mapping[str, tuple[str | Path, Sequence[str | Path]]],
    base: str,
    alpha: float,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series, str]:
    """(table, p-values, marked, tested metric) of `variants` ({name: (choice file, metrics files of its
    `selected` system on each evaluation target)}): a row per variant and target, with `selected`,
    `dev_<metric>`, the target's metrics, and `best` (`*` on the dev argmax's rows); the p-values a `p_vs_<base>`
    column (Holm-adjusted over the variants of each target), `marked` the tested metric with its marks."""
    if base not in variants:
        raise ValueError(f"the base variant '{base}' is not among the variants {list(variants)}")
    rows, per_query, dev = [], {}, {}
    select_metric = None
    for name, (choice_path, metric_paths) in variants.items():
        choice = read_choice(choice_path)
        select_metric = select_metric or choice["metric"]
        if choice["metric"] != select_metric:
            raise ValueError(f"{choice_path}: chosen on {choice['metric']}, the other variants on {select_metric}")
        dev[name] = float(choice["dev"][choice["round"]])
        for path in metric_paths:
            record = json.loads(Path(path).read_text())
            target = (record["dataset"], record["split"])
            rows.append(
                {
                    "variant": name,
                    "selected": int(choice["round"]),
                    f"dev_{select_metric}": dev[name],
                    "dataset": target[0],
                    "split": target[1],
                    **record["metrics"],
                }
            )
            per_query[(name, *target)] = record.get("per_query", {})
    table = pd.DataFrame(rows)
    metrics = [c for c in table.columns if c not in ("variant", "selected", f"dev_{select_metric}", "dataset", "split")]
    metric = tested_metric(metrics)
    systems = table.rename(columns={"variant": "system"})
    pvalues = pvalue_columns(systems, per_query, [base], metric)
    marked = marked_values(systems, metric, marks(systems, pvalues, metric, alpha))
    best = max(dev, key=lambda n: (dev[n], -list(dev).index(n)))
    table[BEST] = (table["variant"] == best).map({True: "*", False: ""})
    return table, pvalues, marked, metric


def dev_by_round(choices: Mapping[str, str | Path]) -> dict[str, list[float]]:
    """The dev figure of each round, per variant (from their choice files)."""
    return {name: [float(v) for v in read_choice(path)["dev"]] for name, path in choices.items()}


def legend(metric: str, base: str, alpha: float, select_metric: str) -> str:
    return (
        f"Each variant's `selected` round is its best on dev ({select_metric}); best (*) = the best dev figure. "
        f"Marks after {metric}: a = the base variant '{base}'; + better, - worse at adjusted p < alpha = {alpha:g} "
        "(paired t-test, two-sided, Holm-corrected over the variants of each target; p_vs_<base>: the adjusted "
        "p-values)."
    )
