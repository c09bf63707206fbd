"""Any TREC runs, compared: the summary's table (metrics, paired t-tests against baselines, Holm-corrected, the
marks) for run files from anywhere (ours, Tevatron's, Pyserini's), scored against one qrels file.

Every piece is the summary's: runs are read by `dr_core.runs.read_trec` (the run-file contract: ties ranked as
trec_eval ranks them, by score then doc id, whatever the rank column says), scored by `dr_core.evaluate.evaluate`
over the qrels' queries (a query a run misses scores 0, as `trec_eval -c` and the summary count it), and tested by
`dr_core.significance` (one target: the qrels; each baseline's family is the other runs).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from dr_core.data.formats import QRELS_COLUMNS, qrels_table, read_trec_qrels
from dr_core.errors import DataError, MissingPathError
from dr_core.evaluate import TESTED_METRIC, evaluate
from dr_core.runs import read_trec, run_to_dict
from dr_core.significance import SignificanceSettings, check_baselines, marked_values, marks, pvalue_columns

log = logging.getLogger("dr_core")

DEFAULT_ALPHA = SignificanceSettings.alpha  # the recipe's eval.alpha
TARGET = ("", "")  # the one (dataset, split) of the significance functions: the qrels


def read_qrels(path: str | Path) -> pd.DataFrame:
    """The qrels table (qid, docid, rel) of our qrels Parquet table or a TREC qrels file (`qid 0 docid rel`, or
    two columns `qid docid`: rel 1); a Parquet file is recognised by its magic bytes, not its name."""
    path = Path(path)
    if not path.is_file():
        raise MissingPathError(f"{path}: no such qrels file")
    with open(path, "rb") as f:
        parquet = f.read(4) == b"PAR1"
    if not parquet:
        judged = read_trec_qrels(path)
        table = qrels_table((q, d, rel) for q, docs in judged.items() for d, rel in docs.items())
    else:
        table = pd.read_parquet(path)
        if not set(QRELS_COLUMNS) <= set(table.columns):
            raise DataError(path, None, f"a qrels table needs the columns {QRELS_COLUMNS}, has {list(table.columns)}")
        table = table[QRELS_COLUMNS].astype({"qid": str, "docid": str})
    if table.empty:
        raise DataError(path, None, "no judgement")
    return table


def split_run_argument(text: str) -> tuple[str | None, str]:
    """(name, path) of a run argument: `NAME=PATH` names the run, a plain path (or an existing file whose name
    holds '=') does not."""
    name, sep, path = text.partition("=")
    if not sep or not name or Path(text).exists():
        return None, text
    return name, path


def run_names(paths: Sequence[str], names: Sequence[str | None], tags: Sequence[set[str]]) -> list[str]:
    """Each run's name: the one given (`NAME=PATH`); else its tag, when the file has a single tag that no other
    run has (given name or tag); else its path as given. A name given twice is a ValueError."""
    unnamed_tags = [next(iter(t)) for n, t in zip(names, tags) if n is None and len(t) == 1]
    out = []
    for path, name, tag in zip(paths, names, tags):
        if name is None:
            single = next(iter(tag)) if len(tag) == 1 else None
            unique = single is not None and unnamed_tags.count(single) == 1 and single not in names
            name = single if unique else path
        out.append(name)
    twice = sorted({n for n in out if out.count(n) > 1})
    if twice:
        raise ValueError(f"run names {twice} given twice: name the runs with NAME=PATH")
    return out


def read_runs(arguments: Sequence[str]) -> tuple[dict[str, dict[str, dict[str, float]]], dict[str, str]]:
    """({name: run as qid -> {docid: score}}, {name: path}) of the run arguments (`PATH` or `NAME=PATH`), named
    by `run_names`."""
    names, paths, runs, tags = [], [], [], []
    for text in arguments:
        name, path = split_run_argument(text)
        if not Path(path).is_file():
            raise MissingPathError(f"{path}: no such run file")
        run = read_trec(path, tags=True)
        if run.empty:
            raise DataError(path, None, "an empty run")
        names.append(name)
        paths.append(path)
        tags.append(set(run["tag"]))
        runs.append(run_to_dict(run))
    named = run_names(paths, names, tags)
    return dict(zip(named, runs)), dict(zip(named, paths))


def tested_metric(metrics: Sequence[str], metric: str | None = None) -> str:
    """The metric the t-tests and marks use: `metric` if given (it must be among `metrics`), else the summary's
    choice: ndcg@10, else the first metric."""
    if metric is not None:
        if metric not in metrics:
            raise ValueError(f"--metric {metric} is not among the metrics {list(metrics)}")
        return metric
    return TESTED_METRIC if TESTED_METRIC in metrics else metrics[0]


def compare(
    runs: Mapping[str, Mapping[str, Mapping[str, float]]],
    qrels: pd.DataFrame,
    metrics: Sequence[str],
    baselines: Sequence[str],
    metric: str,
    alpha: float = DEFAULT_ALPHA,
    paths: Mapping[str, str] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    """(table, p-values, marked) for `runs` ({name: qid -> {docid: score}}) against `qrels`: the table has a row per
    run (system, then the mean of each metric over the qrels' queries), the p-values a `p_vs_<baseline>` column
    per baseline (Holm over the other runs; NaN for the baseline itself), `marked` the tested `metric` of each row
    as text with the summary's marks (`0.7041 a+`). A run without any judged query is a DataError (naming its
    path from `paths`)."""
    if not 0 < alpha < 1:
        raise ValueError(f"--alpha must be in (0, 1), got {alpha}")
    judged = set(qrels["qid"])
    rows, per_query = [], {}
    for name, run in runs.items():
        where = (paths or {}).get(name, name)
        found = judged.intersection(run)
        if not found:
            raise DataError(where, None, f"run '{name}' has no query of the qrels ({len(run)} queries, none judged)")
        log.info(
            "%s (%s): %d of the qrels' %d queries (the %d it misses score 0), %d unjudged queries left out",
            name, where, len(found), len(judged), len(judged) - len(found), len(set(run) - judged),
        )  # fmt: skip
        mean, scores = evaluate(dict(run), qrels, list(metrics))
        rows.append({"system": name, "dataset": TARGET[0], "split": TARGET[1], **mean})
        per_query[(name, *TARGET)] = scores
    table = pd.DataFrame(rows)
    check_baselines(table, baselines, "--baseline")
    pvalues = pvalue_columns(table, per_query, baselines, metric)
    marked = marked_values(table, metric, marks(table, pvalues, metric, alpha))
    return table.drop(columns=["dataset", "split"]), pvalues, marked
