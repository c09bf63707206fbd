"""Report figures and tables: metrics across rounds, training curves, DRO cluster weights, job runtimes.

Each function reads the workflow's outputs (summary TSV, train_log CSVs, benchmark TSVs) and writes one
PNG/SVG (format from the file suffix) or HTML file, atomically. `python -m dr_core.plots <kind> ...` runs them.
"""

from __future__ import annotations

import argparse
import html
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from dr_core.atomic import atomic_path  # noqa: E402
from dr_core.errors import DataError  # noqa: E402

DRO_COLUMN = re.compile(r"cluster_weight_(.+)")
ROUND = re.compile(r"round(\d+)")


def _save(fig: Figure, out: str | Path) -> None:
    """Write a figure atomically; the format is the file suffix (png, svg, pdf)."""
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format=Path(out).suffix.lstrip("."), dpi=120, bbox_inches="tight")
    plt.close(fig)


def _round_of(system: str) -> int | None:
    m = ROUND.fullmatch(system)
    return int(m.group(1)) if m else None


def _round_label(path: Path) -> str:
    """`.../round2/train_log.csv` -> `round2`."""
    return path.parent.name


def read_summary(path: str | Path) -> pd.DataFrame:
    """The summary table; checks the columns the plots need."""
    table = pd.read_csv(path, sep="\t")
    missing = {"system", "dataset", "split", "ndcg@10"} - set(table.columns)
    if missing:
        raise DataError(path, 1, f"summary lacks columns {sorted(missing)}")
    return table


def recall_columns(table: pd.DataFrame) -> list[str]:
    """recall@k columns, by increasing k."""
    cols = [c for c in table.columns if c.startswith("recall@")]
    return sorted(cols, key=lambda c: int(c.split("@")[1]))


def _metric_panel(ax: plt.Axes, rows: pd.DataFrame, metrics: list[str], title: str) -> None:
    """One line per metric over the rounds; BM25 (when present) as a dashed line of the same colour."""
    rounds = rows.assign(round=rows["system"].map(_round_of)).dropna(subset=["round"]).sort_values("round")
    bm25 = rows[rows["system"] == "bm25"]
    for metric in metrics:
        (line,) = ax.plot(rounds["round"].astype(int), rounds[metric], marker="o", label=metric)
        if not bm25.empty:
            ax.axhline(bm25[metric].iloc[0], ls="--", color=line.get_color(), label=f"{metric} BM25")
    ax.set(title=title, xlabel="round (0 = base model, zero-shot)", ylim=(0, 1.02))
    ax.set_xticks(rounds["round"].astype(int).tolist())
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="lower right")


def plot_metrics(summary: str | Path, out: str | Path) -> None:
    """nDCG@10 and recall@k per round, one row of panels per evaluation target."""
    table = read_summary(summary)
    targets = list(table.groupby(["dataset", "split"], sort=False))
    fig, axes = plt.subplots(len(targets), 2, figsize=(10, 3.6 * len(targets)), squeeze=False, layout="constrained")
    for row, ((dataset, split), rows) in zip(axes, targets):
        _metric_panel(row[0], rows, ["ndcg@10"], f"nDCG@10 - {dataset} {split}")
        _metric_panel(row[1], rows, recall_columns(table), f"Recall - {dataset} {split}")
    _save(fig, out)


def read_train_log(path: str | Path) -> pd.DataFrame:
    """A train_log CSV; checks it has steps and losses."""
    log = pd.read_csv(path)
    missing = {"step", "loss"} - set(log.columns)
    if missing:
        raise DataError(path, 1, f"train log lacks columns {sorted(missing)}")
    if log.empty:
        raise DataError(path, None, "train log has no rows")
    return log


def plot_training(logs: Sequence[str | Path], out: str | Path) -> None:
    """Training loss (each log row's: the mean over the steps since the previous row) and validation loss when
    logged, against step, one line per round."""
    fig, ax = plt.subplots(figsize=(8, 4.5), layout="constrained")
    for path in map(Path, logs):
        log = read_train_log(path)
        (line,) = ax.plot(log["step"], log["loss"], label=f"{_round_label(path)} train")
        val = log.dropna(subset=["val_loss"]) if "val_loss" in log else log.iloc[0:0]
        if not val.empty:
            ax.plot(val["step"], val["val_loss"], "s--", color=line.get_color(), label=f"{_round_label(path)} val")
    ax.set(title="Training loss", xlabel="step", ylabel="loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    _save(fig, out)


def dro_panels(path: str | Path) -> dict[str, pd.DataFrame]:
    """Panel title -> columns to draw against step: the per-cluster weights (`cluster_weight_<g>`, renamed
    `<g>`) when the log has them, else one panel per `dro/<stat>` summary column."""
    log = read_train_log(path).set_index("step")
    weights = {c: m.group(1) for c in log.columns if (m := DRO_COLUMN.fullmatch(c))}
    if weights:
        return {"cluster weights": log[list(weights)].rename(columns=weights)}
    stats = [c for c in log.columns if c.startswith("dro/")]
    if not stats:
        raise DataError(path, 1, "train log has neither cluster_weight_<g> nor dro/<stat> columns (recipe uses DRO)")
    return {c.removeprefix("dro/").replace("_", " "): log[[c]].dropna() for c in stats}


def plot_dro_weights(logs: Sequence[str | Path], out: str | Path) -> None:
    """DRO cluster weights (or the logged DRO summaries) against step, one row of panels per round."""
    paths = [Path(p) for p in logs]
    panels = [dro_panels(p) for p in paths]
    ncols = max(map(len, panels))
    fig, axes = plt.subplots(
        len(paths),
        ncols,
        figsize=(8 if ncols == 1 else 3.6 * ncols, 3.4 * len(paths)),
        squeeze=False,
        layout="constrained",
    )
    for row, path, round_panels in zip(axes, paths, panels):
        for ax, (title, frame) in zip(row, round_panels.items()):
            ax.plot(frame.index, frame.to_numpy(), label=list(frame.columns))
            ax.set(title=f"DRO {title} - {_round_label(path)}", xlabel="step")
            ax.grid(alpha=0.3)
            if title == "cluster weights" and len(frame.columns) <= 12:
                ax.legend(title="cluster", fontsize="small")
        for ax in row[len(round_panels) :]:
            ax.set_axis_off()
    _save(fig, out)


def read_benchmarks(paths: Sequence[str | Path]) -> pd.DataFrame:
    """Snakemake benchmark TSVs -> one row per job: rule (folder), job (file stem), wall s, max RSS MB."""
    rows = []
    for path in map(Path, paths):
        bench = pd.read_csv(path, sep="\t")
        if bench.empty or "s" not in bench:
            raise DataError(path, 1, "not a Snakemake benchmark file (no 's' column or no rows)")
        rss = pd.to_numeric(bench.get("max_rss"), errors="coerce")
        rows.append({"rule": path.parent.name, "job": path.stem, "s": bench["s"].mean(), "max_rss": rss.max()})
    return pd.DataFrame(rows)


def plot_runtimes(benchmarks: Sequence[str | Path], out: str | Path) -> None:
    """Wall time and peak memory of each benchmarked job, coloured by rule."""
    table = read_benchmarks(benchmarks).sort_values(["rule", "job"], ascending=False)
    colours = {rule: f"C{i}" for i, rule in enumerate(sorted(table["rule"].unique()))}
    labels = table["rule"] + ": " + table["job"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 0.35 * len(table) + 1.5), sharey=True, layout="constrained")
    left.barh(labels, table["s"], color=table["rule"].map(colours))
    left.set(title="Wall time", xlabel="seconds")
    right.barh(labels, table["max_rss"].fillna(0), color=table["rule"].map(colours))
    right.set(title="Peak memory", xlabel="max RSS (MB)")
    for ax in (left, right):
        ax.grid(axis="x", alpha=0.3)
    _save(fig, out)


def _bold_best(table: pd.DataFrame, columns: list[str], groups: list[str] | None = None) -> pd.DataFrame:
    """`table` as text cells, numbers to 4 places, the best of each column (within `groups`) in bold."""
    cells = table.astype(object)
    # a cell may carry significance marks after its number (`0.7618 a+`, summary.beir.tsv): kept after it
    parts = {
        c: None if pd.api.types.is_numeric_dtype(table[c]) else table[c].astype(str).str.partition(" ") for c in columns
    }
    numbers = table.assign(**{c: pd.to_numeric(parts[c][0]) for c in columns if parts[c] is not None})
    best = numbers.groupby(groups)[columns].transform("max") if groups else numbers[columns].max()
    for column in columns:
        text = numbers[column].map(lambda v: "" if pd.isna(v) else f"{v:.4f}")
        text = text.where(~(numbers[column] >= best[column]), "<b>" + text + "</b>")
        marks = None if parts[column] is None else parts[column][2].fillna("")
        cells[column] = text if marks is None else text + (" " + marks).where(marks != "", "")
    return cells


def summary_html(
    summary: str | Path, out: str | Path, beir: str | Path | None = None, metric: str = "ndcg@10", alpha: float = 0.05
) -> None:
    """The summary table as a standalone HTML page; the best system per metric and target in bold, and the
    tested `metric` marked where a `p_vs_<baseline>` column's adjusted p-value is below `alpha` (as
    `summarize` prints it). With `beir` (summary.beir.tsv, marked by `summarize`), the BEIR-style table follows:
    one metric per system and dataset, and their mean."""
    from dr_core.significance import format_p, legend, marks

    table = read_summary(summary)
    pcols = [c for c in table.columns if c.startswith("p_vs_")]
    metrics = [c for c in table.columns if c not in ("system", "dataset", "split", *pcols)]
    cells = _bold_best(table, metrics, ["dataset", "split"])
    note = beir_note = ""
    if pcols:
        tested = metric if metric in metrics else metrics[0]  # as `summarize` falls back
        cells[tested] = cells[tested] + marks(table, table[pcols], tested, alpha).where(table[tested].notna(), "")
        cells = cells.assign(**{c: table[c].map(format_p) for c in pcols})
        baselines = [c.removeprefix("p_vs_") for c in pcols]
        note = f"<p class='legend'>{html.escape(legend(tested, baselines, alpha))}</p>"
        beir_note = f"<p class='legend'>{html.escape(legend(tested, baselines, alpha, columns=False))}</p>"
    body = cells.to_html(index=False, escape=False) + note
    if beir:
        wide = pd.read_csv(beir, sep="\t")
        body += (
            "<h3>BEIR style: nDCG@10 per evaluation dataset, avg = their mean</h3>"
            + _bold_best(wide, [c for c in wide.columns if c != "system"]).to_html(
                index=False, escape=False, classes="beir"
            )
            + beir_note
        )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>Retrieval metrics</title><style>"
        "body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}"
        "th,td{border:1px solid #bbb;padding:4px 10px;text-align:right}th{background:#eee}"
        "td:nth-child(-n+3){text-align:left}table.beir td{text-align:right}table.beir td:first-child{text-align:left}"
        "</style></head>"
        f"<body>{body}</body></html>\n"
    )
    with atomic_path(out) as tmp:
        tmp.write_text(page)


def plot_sweep_dev(dev: Mapping[str, Sequence[float]], metric: str, out: str | Path) -> None:
    """A sweep's dev figure per round, a line per variant (the rounds each variant trained)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, values in dev.items():
        ax.plot(range(len(values)), values, marker="o", label=name)
    ax.set_xlabel("round")
    ax.set_ylabel(f"dev {metric}")
    ax.set_xticks(range(max(len(v) for v in dev.values())))
    ax.set_title("Dev figure by round, per variant")
    ax.legend(fontsize="small")
    _save(fig, out)


def sweep_html(table: pd.DataFrame, note: str, out: str | Path) -> None:
    """A sweep's comparison (sweep.tsv's rows, the tested metric marked) as a standalone HTML page."""
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>Sweep</title><style>"
        "body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}"
        "th,td{border:1px solid #bbb;padding:4px 10px;text-align:right}th{background:#eee}"
        "td:first-child{text-align:left}</style></head>"
        f"<body>{table.to_html(index=False, na_rep='')}<p class='legend'>{html.escape(note)}</p></body></html>\n"
    )
    with atomic_path(out) as tmp:
        tmp.write_text(page)


# CLI kind -> (input option, whether it takes several files, function(inputs, out)).
KINDS = {
    "metrics": ("summary", False, plot_metrics),
    "table": ("summary", False, summary_html),
    "training": ("logs", True, plot_training),
    "dro": ("logs", True, plot_dro_weights),
    "runtimes": ("benchmarks", True, plot_runtimes),
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dr_core.plots", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="kind", required=True)
    for kind, (source, many, func) in KINDS.items():
        s = sub.add_parser(kind, help=func.__doc__.splitlines()[0])
        s.add_argument(f"--{source}", dest="src", nargs="+" if many else None, required=True)
        s.add_argument("--out", required=True)
    sub.choices["table"].add_argument("--beir", help="summary.beir.tsv, shown after the summary")
    sub.choices["table"].add_argument("--metric", default="ndcg@10", help="the metric summarize tested")
    sub.choices["table"].add_argument("--alpha", type=float, default=0.05, help="marks where adjusted p < alpha")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    extra = {"beir": args.beir, "metric": args.metric, "alpha": args.alpha} if args.kind == "table" else {}
    KINDS[args.kind][2](args.src, args.out, **extra)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
