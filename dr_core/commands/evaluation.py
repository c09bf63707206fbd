"""Commands for hybrid runs (fusion), metrics, the summary tables and the comparison of any runs. scipy
(significance) loads when summarize or compare parses its arguments (their SignificanceSettings)."""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from dr_core.atomic import atomic_path, write_json
from dr_core.evaluate import (
    DEFAULT_BASELINES,
    DEFAULT_METRICS,
    METRICS,
    TESTED_METRIC,
    beir_table,
    evaluate,
    markdown_table,
    summary_table,
)
from dr_core.fusion import fuse, tune_weight
from dr_core.runs import read_trec, run_to_dict, write_trec_frame
from dr_core.settings import setting, settings_from_args

log = logging.getLogger("dr_core")


@dataclass(frozen=True)
class FuseSettings:
    """How a BM25 run and a dense run are fused (the recipe's hybrid.method, weight, rrf_k and depth)."""

    method: str = setting(
        "convex", "convex: weighted sum of min-max scores; rrf: reciprocal-rank fusion", ["convex", "rrf"]
    )
    weight: float | None = setting(None, "dense weight of the convex sum; null: --weight-file's tuned weight")
    rrf_k: int = setting(60, "RRF's rank offset")
    depth: int = setting(100, "each run is cut to this depth first")


def _add_fusion_weight(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("fusion-weight", help="tune the convex fusion weight on a split's judged queries")
    for name in ("--bm25", "--dense", "--qrels", "--out"):
        s.add_argument(name, required=True)
    s.add_argument("--depth", type=int, default=FuseSettings.depth, help="each run is cut to this depth first")
    s.set_defaults(func=_fusion_weight)


def _fusion_weight(a: argparse.Namespace) -> None:
    result = tune_weight(read_trec(a.bm25), read_trec(a.dense), pd.read_parquet(a.qrels), a.depth)
    log.info("convex weight %.2f: %s %.4f on %d queries", *(result[k] for k in ("weight", "metric", "best", "queries")))
    write_json(result, a.out)


def _add_fuse(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "fuse",
        help="fuse a BM25 run with a dense run (convex sum of min-max scores, or RRF)",
        settings={"": "dr_core.commands.evaluation:FuseSettings"},
    )
    for name in ("--bm25", "--dense", "--out", "--tag"):
        s.add_argument(name, required=True)
    s.add_argument("--weight-file", help="JSON with the tuned 'weight' (from fusion-weight)")
    s.set_defaults(func=_fuse)


def _fuse(a: argparse.Namespace) -> None:
    s = settings_from_args(FuseSettings, a)
    weight = json.loads(Path(a.weight_file).read_text())["weight"] if a.weight_file else s.weight
    fused = fuse(read_trec(a.bm25), read_trec(a.dense), s.method, s.depth, weight=weight, rrf_k=s.rrf_k)
    log.info("%s fusion (weight %s, rrf_k %d): %d queries", s.method, weight, s.rrf_k, fused["qid"].nunique())
    write_trec_frame(a.out, fused, tag=a.tag)


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("evaluate", help="score a run with pytrec_eval")
    for name in ("--run", "--qrels", "--out", "--system", "--dataset", "--split"):
        s.add_argument(name, required=True)
    s.add_argument("--metrics", nargs="+", required=True)
    s.set_defaults(func=_evaluate)


def _evaluate(a: argparse.Namespace) -> None:
    mean, per_query = evaluate(run_to_dict(read_trec(a.run)), pd.read_parquet(a.qrels), a.metrics)
    log.info("%s %s/%s: %s", a.system, a.dataset, a.split, ", ".join(f"{k}={v:.4f}" for k, v in mean.items()))
    write_json(
        {"system": a.system, "dataset": a.dataset, "split": a.split, "metrics": mean, "per_query": per_query}, a.out
    )


def _add_summarize(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "summarize",
        help="one table from metrics JSON files",
        settings={"": "dr_core.significance:SignificanceSettings"},
    )
    s.add_argument("--metrics", nargs="+", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--beir-out", default="", help="also a system x dataset table of one metric, with its mean")
    s.add_argument("--beir-metric", default=TESTED_METRIC)
    s.add_argument(
        "--baselines", nargs="+", default=DEFAULT_BASELINES, help="systems every other system is tested against"
    )
    s.add_argument("--metric", default=TESTED_METRIC, help="the metric tested (absent: the first metric column)")
    s.set_defaults(func=_summarize)


def _summarize(a: argparse.Namespace) -> None:
    from dr_core.significance import (
        SignificanceSettings,
        check_baselines,
        format_p,
        legend,
        load_per_query,
        marked_values,
        marks,
        pvalue_columns,
    )

    alpha = settings_from_args(SignificanceSettings, a).alpha
    if not 0 < alpha < 1:
        raise ValueError(f"--alpha (eval.alpha) must be in (0, 1), got {alpha}")
    table = summary_table([Path(p) for p in a.metrics])
    check_baselines(table, a.baselines)  # before anything is written
    per_query = load_per_query(a.metrics)
    tested = a.metric if a.metric in table.columns else table.columns[3]  # eval.metrics' first
    pvalues = pvalue_columns(table, per_query, a.baselines, tested)
    pcolumns = {c: pvalues[c].map(format_p) for c in pvalues}
    with atomic_path(a.out) as tmp:
        table.assign(**pcolumns).to_csv(tmp, sep="\t", index=False, float_format="%.4f")
    shown = table.assign(**{tested: marked_values(table, tested, marks(table, pvalues, tested, alpha))}, **pcolumns)
    print(shown.to_string(index=False, float_format=lambda x: f"{x:.4f}", na_rep=""))
    print(legend(tested, a.baselines, alpha))
    if a.beir_out:
        metric = a.beir_metric if a.beir_metric in table.columns else table.columns[3]  # eval.metrics' first
        beir_p = pvalues if metric == tested else pvalue_columns(table, per_query, a.baselines, metric)
        beir = beir_table(table, metric, marked_values(table, metric, marks(table, beir_p, metric, alpha)))
        with atomic_path(a.beir_out) as tmp:
            beir.to_csv(tmp, sep="\t", index=False, float_format="%.4f")
        print(f"\n{metric} per evaluation dataset, avg = their mean:\n\n{markdown_table(beir)}")
        print(legend(metric, a.baselines, alpha, columns=False))


COMPARE_HELP = """\
The summary's table for any TREC run files (ours, Tevatron's, Pyserini's ...): each run's metrics over the qrels'
queries and, per baseline, the paired two-sided t-test p-value of the tested metric (Holm-corrected over the other
runs), marked a+/b- as the summary marks them.

Runs: PATH or NAME=PATH. A run is named NAME when given; else by its tag column when the file has one tag and no
other run has it (our runs are tagged with their system: bm25, round1 ...); else by its path as given.
Qrels: a TREC qrels file (qid 0 docid rel) or our qrels Parquet table (qid, docid, rel). The queries counted are
the qrels' queries, as in the workflow's summary: a judged query a run misses scores 0 (trec_eval -c); a run's
unjudged queries are left out; a run without any judged query is an error.
Output: the table as TSV on stdout, the tested metric's values with their marks, then the legend line; with --out
also a TSV file in summary.tsv's form (unmarked values, p_vs_<baseline> columns), written atomically.
"""


def _add_compare(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "compare",
        help="the summary's table (metrics, paired t-tests against baselines, Holm) for any TREC run files",
        description=COMPARE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        settings={"": "dr_core.significance:SignificanceSettings"},
    )
    s.add_argument("runs", nargs="+", metavar="RUN", help="a TREC run file: PATH or NAME=PATH")
    s.add_argument("--qrels", required=True, help="TREC qrels (qid 0 docid rel) or our qrels Parquet table")
    s.add_argument(
        "--baseline",
        action="append",
        metavar="RUN",
        help="a run every other run is tested against, by name or path; repeat for several (letters a, b ... in "
        "the marks); default: the first run",
    )
    s.add_argument(
        "--metrics", nargs="+", default=DEFAULT_METRICS, choices=sorted(METRICS), metavar="METRIC",
        help=f"metrics of the table, from {sorted(METRICS)} (default: the recipe's eval.metrics, {DEFAULT_METRICS})",
    )  # fmt: skip
    s.add_argument("--metric", help="the metric tested and marked (default: ndcg@10, else the first of --metrics)")
    s.add_argument("--out", help="also write the table (summary.tsv's form) to this file")
    s.set_defaults(func=_compare)


def _compare(a: argparse.Namespace) -> None:
    from dr_core.compare import compare, read_qrels, read_runs, tested_metric
    from dr_core.significance import SignificanceSettings, format_p, legend

    alpha = settings_from_args(SignificanceSettings, a).alpha

    metric = tested_metric(a.metrics, a.metric)
    qrels = read_qrels(a.qrels)
    runs, paths = read_runs(a.runs)
    by_path = {path: name for name, path in paths.items()}
    baselines = [by_path.get(b, b) for b in a.baseline or [next(iter(runs))]]
    table, pvalues, marked = compare(runs, qrels, a.metrics, baselines, metric, alpha, paths)
    pcolumns = {c: pvalues[c].map(format_p) for c in pvalues}
    if a.out:
        with atomic_path(a.out) as tmp:
            table.assign(**pcolumns).to_csv(tmp, sep="\t", index=False, float_format="%.4f")
    shown = table.assign(**{metric: marked}, **pcolumns)
    print(shown.to_csv(sep="\t", index=False, float_format="%.4f"), end="")
    print(legend(metric, baselines, alpha))


def _add_sweep_table(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "sweep-table",
        help="a sweep's comparison: each variant's selected round (dev), test figures, t-test against the base",
        settings={"": "dr_core.significance:SignificanceSettings"},
    )
    s.add_argument("--variants", nargs="+", required=True, help="the variants' names, the base among them")
    s.add_argument("--base", required=True, help="the variant every other is tested against")
    s.add_argument("--choices", nargs="+", required=True, help="each variant's choice.json, in --variants order")
    s.add_argument(
        "--tests", nargs="+", required=True,
        help="the metrics JSON of each variant's `selected` system on every evaluation target, variant by variant",
    )  # fmt: skip
    s.add_argument("--out", required=True, help="the table (TSV)")
    s.add_argument("--html", help="also the table as an HTML page")
    s.add_argument("--plot", help="also the dev figure by round per variant (PNG)")
    s.set_defaults(func=_sweep_table)


def _sweep_table(a: argparse.Namespace) -> None:
    from dr_core.plots import plot_sweep_dev, sweep_html
    from dr_core.significance import SignificanceSettings, format_p
    from dr_core.sweep_table import dev_by_round, legend, sweep_table

    alpha = settings_from_args(SignificanceSettings, a).alpha
    n = len(a.variants)
    if len(a.choices) != n or len(a.tests) % n:
        raise ValueError(f"sweep-table: {n} variants need {n} --choices and the same number of --tests for each")
    per = len(a.tests) // n
    variants = {
        name: (choice, a.tests[i * per : (i + 1) * per]) for i, (name, choice) in enumerate(zip(a.variants, a.choices))
    }
    table, pvalues, marked, metric = sweep_table(variants, a.base, alpha)
    pcolumns = {c: pvalues[c].map(format_p) for c in pvalues}
    select_metric = next(c for c in table.columns if c.startswith("dev_")).removeprefix("dev_")
    note = legend(metric, a.base, alpha, select_metric)
    with atomic_path(a.out) as tmp:
        table.assign(**pcolumns).to_csv(tmp, sep="\t", index=False, float_format="%.4f")
    shown = table.assign(**{metric: marked}, **pcolumns)
    print(shown.to_csv(sep="\t", index=False, float_format="%.4f"), end="")
    print(note)
    if a.html:
        sweep_html(shown.round(4), note, a.html)
    if a.plot:
        plot_sweep_dev(dev_by_round(dict(zip(a.variants, a.choices))), select_metric, a.plot)


def register(sub: argparse._SubParsersAction) -> None:
    """Hybrid runs (fusion), metrics, the summary tables and the comparison of any runs."""
    for add in (_add_fusion_weight, _add_fuse, _add_evaluate, _add_summarize, _add_compare, _add_sweep_table):
        add(sub)
