"""A saved model's card (dr_core.model_card) completed after evaluation: its metrics per evaluation set and the
command that reproduces it, written as a separate file (the model folder is a finished workflow output). A module
apart from model_card, so that editing it does not change what training runs (dr_core.fingerprint)."""

from __future__ import annotations

import json
from pathlib import Path

from dr_core.atomic import atomic_path
from dr_core.model_card import CARD_FILE, metrics_section


def metric_rows(metric_files: list[str | Path]) -> list[dict]:
    """Rows {dataset, split, metric: value ...} of one system's metrics JSON files (dr_core evaluate)."""
    rows = []
    for path in metric_files:
        m = json.loads(Path(path).read_text())
        rows.append({"dataset": m["dataset"], "split": m["split"], **m["metrics"]})
    return rows


def card_with_metrics(card: str, metrics: list[dict], command: str) -> str:
    """A written card (`write_card`'s text) with its metrics section replaced by `metrics`, and `command`, the
    one that reproduces the model and its evaluation."""
    head, sep, _ = card.partition("\n## Metrics\n")
    if not sep:
        raise ValueError("the model card has no '## Metrics' section (not written by dr_core.model_card?)")
    return head + "\n" + metrics_section(metrics) + f"\n## Reproduce\n\n```bash\n{command}\n```\n"


def write_metrics_card(model_dir: str | Path, metric_files: list[str | Path], command: str, out: str | Path) -> Path:
    """`out`: the card of `model_dir` with the metrics of `metric_files`, written atomically; the model folder is
    left as it is."""
    card = Path(model_dir) / CARD_FILE
    if not card.exists():
        raise FileNotFoundError(f"{card}: no model card (the model was saved without one)")
    text = card_with_metrics(card.read_text(), metric_rows(metric_files), command)
    with atomic_path(out) as tmp:
        tmp.write_text(text)
    return Path(out)
