"""`python -m dr_core compare`: the summary's table (metrics, paired t-tests, Holm, marks) for any TREC run files."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import pytrec_eval
import yaml
from conftest import REPO
from scipy.stats import ttest_rel

from dr_core import cli
from dr_core.data.formats import qrels_table, write_parquet
from dr_core.evaluate import DEFAULT_METRICS
from dr_core.runs import rank_frame, write_trec_frame

QUERIES = [f"q{i}" for i in range(8)]
# How strongly each run's scores follow the judgements (the baseline first); "weak" misses the last query.
SIGNAL = {"base": 0.6, "good": 2.0, "same": 0.7, "weak": 0.2}
# our metric -> (pytrec_eval's measure family, its value's name); the runs hold 10 documents: no cut for mrr@10
MEASURES = {
    "ndcg@10": ("ndcg_cut.10", "ndcg_cut_10"),
    "map": ("map", "map"),
    "recall@100": ("recall.100", "recall_100"),
    "mrr@10": ("recip_rank", "recip_rank"),
}


def _qrels() -> dict[str, dict[str, int]]:
    rng = np.random.default_rng(0)
    return {q: {f"d{j}": int(rng.integers(1, 3)) for j in rng.choice(20, size=3, replace=False)} for q in QUERIES}


def _runs() -> dict[str, dict[str, dict[str, float]]]:
    """Each system's 10 documents of 20 per query, scored noise + signal * relevance."""
    qrels, rng, runs = _qrels(), np.random.default_rng(1), {}
    for system, signal in SIGNAL.items():
        runs[system] = {}
        for q in QUERIES[:-1] if system == "weak" else QUERIES:
            scores = {f"d{j}": rng.normal() + signal * qrels[q].get(f"d{j}", 0) for j in range(20)}
            runs[system][q] = dict(sorted(scores.items(), key=lambda kv: -kv[1])[:10])
    return runs


def _write(tmp_path) -> tuple[list[str], dict[str, str]]:
    """The runs as TREC files tagged with their system (names run1.trec ...), and the qrels as TREC and Parquet."""
    paths = []
    for i, (system, run) in enumerate(_runs().items(), start=1):
        pairs = [(q, d, s) for q, docs in run.items() for d, s in docs.items()]
        frame = rank_frame(*(pd.Series(col) for col in zip(*pairs)))
        write_trec_frame(tmp_path / f"run{i}.trec", frame, system)
        paths.append(str(tmp_path / f"run{i}.trec"))
    rows = [(q, d, rel) for q, docs in _qrels().items() for d, rel in docs.items()]
    (tmp_path / "qrels.txt").write_text("".join(f"{q} 0 {d} {rel}\n" for q, d, rel in rows))
    write_parquet(qrels_table(rows), tmp_path / "qrels.parquet")
    return paths, {"trec": str(tmp_path / "qrels.txt"), "parquet": str(tmp_path / "qrels.parquet")}


def _direct(run: dict[str, dict[str, float]], metric: str) -> dict[str, float]:
    """Per-query pytrec_eval values over the qrels' queries, a query the run misses 0 (trec_eval -c)."""
    family, measure = MEASURES[metric]
    got = pytrec_eval.RelevanceEvaluator(_qrels(), {family}).evaluate(run)
    return {q: got.get(q, {}).get(measure, 0.0) for q in QUERIES}


def _compare(tmp_path, *args: str) -> tuple[int, pd.DataFrame]:
    out = tmp_path / "compare.tsv"
    rc = cli.main(["compare", *args, "--out", str(out)])
    return rc, (pd.read_csv(out, sep="\t", dtype=str, keep_default_na=False) if rc == 0 else None)


@pytest.mark.parametrize("qrels", ["trec", "parquet"])
def test_metrics_are_pytrec_evals_and_p_values_scipys_holm_adjusted(tmp_path, capsys, qrels):
    paths, qrels_files = _write(tmp_path)
    rc, table = _compare(tmp_path, "--qrels", qrels_files[qrels], *paths)
    assert rc == 0
    assert list(table.columns) == ["system", *DEFAULT_METRICS, "p_vs_base"]
    assert list(table["system"]) == list(SIGNAL)  # named by their tags
    runs = _runs()
    per_query = {s: _direct(run, "ndcg@10") for s, run in runs.items()}
    for row in table.itertuples(index=False):
        for metric in MEASURES:
            want = np.mean(list(_direct(runs[row.system], metric).values()))
            assert float(table.set_index("system").loc[row.system, metric]) == pytest.approx(want, abs=5e-5)
    # paired t-tests against the baseline, Holm over the three other runs written out
    raw = {s: ttest_rel(list(per_query[s].values()), list(per_query["base"].values())).pvalue for s in SIGNAL}
    (s1, p1), (s2, p2), (s3, p3) = sorted(((s, raw[s]) for s in SIGNAL if s != "base"), key=lambda kv: kv[1])
    a1 = min(1.0, 3 * p1)
    a2 = max(a1, min(1.0, 2 * p2))
    a3 = max(a2, min(1.0, p3))
    got = table.set_index("system")["p_vs_base"]
    assert got["base"] == ""
    for system, want in ((s1, a1), (s2, a2), (s3, a3)):
        assert float(got[system]) == pytest.approx(want, rel=1e-3)
    assert float(got["good"]) < 0.05  # the strong run is marked, as the summary marks it
    printed = capsys.readouterr().out.splitlines()
    good = next(line for line in printed if line.startswith("good\t"))
    assert good.split("\t")[1].endswith(" a+")
    assert printed[-1].startswith("Marks after ndcg@10: a = base; + better, - worse")


def test_the_table_is_the_summarys_for_the_same_runs(tmp_path, capsys):
    """evaluate + summarize (the workflow's summary rule) and compare give the same figures and p-values."""
    paths, qrels_files = _write(tmp_path)
    metric_files = []
    for system, path in zip(SIGNAL, paths):
        metric_files.append(str(tmp_path / f"{system}.json"))
        args = ["--run", path, "--qrels", qrels_files["parquet"], "--out", metric_files[-1], "--system", system]
        assert cli.main(["evaluate", *args, "--dataset", "toy", "--split", "test", "--metrics", *DEFAULT_METRICS]) == 0
    summary = tmp_path / "summary.tsv"
    assert (
        cli.main(["summarize", "--metrics", *metric_files, "--out", str(summary), "--baselines", "base", "same"]) == 0
    )
    summary_legend = capsys.readouterr().out.splitlines()[-1]
    rc, table = _compare(
        tmp_path, "--qrels", qrels_files["parquet"], *paths, "--baseline", "base", "--baseline", "same"
    )
    assert rc == 0
    assert capsys.readouterr().out.splitlines()[-1] == summary_legend
    want = pd.read_csv(summary, sep="\t", dtype=str, keep_default_na=False).drop(columns=["dataset", "split"])
    want = want[table.columns]  # the summary's metric columns are in the metrics JSON's (sorted) order
    pd.testing.assert_frame_equal(table, want)


def test_the_sweep_table_is_compares_for_the_variants_selected_runs(tmp_path, capsys):
    """A sweep's comparison (each variant's selected run against the base variant's) gives compare's figures and
    Holm-adjusted p-values for the same run files."""
    import json

    from dr_core.sweep_table import sweep_table

    paths, qrels_files = _write(tmp_path)
    variants = {}
    for system, path in zip(SIGNAL, paths):
        metrics = str(tmp_path / f"{system}.json")
        args = ["--run", path, "--qrels", qrels_files["parquet"], "--out", metrics, "--system", "selected"]
        assert cli.main(["evaluate", *args, "--dataset", "toy", "--split", "test", "--metrics", *DEFAULT_METRICS]) == 0
        choice = tmp_path / f"{system}.choice.json"
        choice.write_text(json.dumps({"round": 1, "metric": "ndcg@10", "dev": [0.1, 0.2]}))
        variants[system] = (choice, [metrics])
    table, pvalues, _, _ = sweep_table(variants, "base", 0.05)
    capsys.readouterr()
    rc, compared = _compare(tmp_path, "--qrels", qrels_files["parquet"], *paths, "--baseline", "base")
    assert rc == 0 and list(compared["system"]) == list(table["variant"])
    for metric in DEFAULT_METRICS:
        assert [f"{v:.4f}" for v in table[metric]] == [v.split()[0] for v in compared[metric]], metric
    ours = [f"{p:.4g}" if p == p else "" for p in pvalues["p_vs_base"]]
    assert ours == list(compared["p_vs_base"]) and ours[0] == ""


def test_names_baselines_and_queries_counted(tmp_path, capsys):
    paths, qrels_files = _write(tmp_path)
    # NAME=PATH names a run; a baseline may be given by path; the same tag twice falls back to the paths
    copy = tmp_path / "copy.trec"
    copy.write_text((tmp_path / "run1.trec").read_text())
    rc, table = _compare(tmp_path, "--qrels", qrels_files["trec"], f"bm25={paths[1]}", paths[0], str(copy),
                         "--baseline", paths[0], "--metrics", "ndcg@10", "map")  # fmt: skip
    assert rc == 0
    assert list(table["system"]) == ["bm25", paths[0], str(copy)]
    assert list(table.columns) == ["system", "ndcg@10", "map", f"p_vs_{paths[0]}"]
    assert table.loc[2, f"p_vs_{paths[0]}"] == "1"  # identical runs: no difference
    # the query a run misses counts 0 over the qrels' 8; a query the qrels lack is left out
    weak = tmp_path / "weak.trec"
    weak.write_text((tmp_path / "run4.trec").read_text() + "unjudged Q0 d1 1 9.0 weak\n")
    rc, table = _compare(tmp_path, "--qrels", qrels_files["trec"], str(weak), "--metrics", "ndcg@10")
    per_query = _direct(_runs()["weak"], "ndcg@10")
    assert per_query["q7"] == 0.0 and float(table.loc[0, "ndcg@10"]) == pytest.approx(
        sum(per_query.values()) / 8, abs=5e-5
    )
    # --metric picks the tested metric: the marks and the legend follow it
    rc, _ = _compare(tmp_path, "--qrels", qrels_files["trec"], *paths, "--metric", "map")
    assert rc == 0 and "Marks after map: a = base" in capsys.readouterr().out


@pytest.mark.parametrize(
    "case, message",
    [
        ("score", "run2.trec:4: score 'high' is not a number"),
        ("fields", "run2.trec:2: expected 6 fields"),
        ("qrels", "qrels.txt:3: expected 'qid 0 pid rel' or 'qid pid'"),
        ("unjudged", "run2.trec: run 'good' has no query of the qrels"),
        ("baseline", "--baseline names ['nobody'], not among the systems ['base', 'good', 'same', 'weak']"),
        ("metric", "--metric p@10 is not among the metrics ['ndcg@10', 'map']"),
        ("missing", "nowhere.trec: no such run file"),
    ],
)
def test_bad_input_is_an_error_naming_the_file_and_line(tmp_path, caplog, case, message):
    paths, qrels_files = _write(tmp_path)
    run2, qrels = tmp_path / "run2.trec", tmp_path / "qrels.txt"
    lines = run2.read_text().splitlines(keepends=True)
    extra = []
    if case == "score":  # the blank line counts
        run2.write_text("".join([lines[0], "\n", lines[1], lines[2].replace(lines[2].split()[4], "high"), *lines[3:]]))
    elif case == "fields":
        run2.write_text("".join([lines[0], lines[1].rsplit(" ", 1)[0] + "\n", *lines[2:]]))
    elif case == "qrels":
        qrels.write_text("".join(qrels.read_text().splitlines(keepends=True)[:2]) + "q1 0 d1 x\n")
    elif case == "unjudged":
        run2.write_text("".join(line.replace("q", "other", 1) for line in lines))
    elif case == "missing":
        paths.append(str(tmp_path / "nowhere.trec"))
    elif case == "baseline":
        extra = ["--baseline", "nobody"]
    else:
        extra = ["--metrics", "ndcg@10", "map", "--metric", "p@10"]
    assert cli.main(["compare", "--qrels", str(qrels), *paths, *extra, "--out", str(tmp_path / "c.tsv")]) == 1
    assert message in caplog.text
    assert not (tmp_path / "c.tsv").exists()


def test_help_and_defaults_are_the_recipes():
    proc = subprocess.run(
        [sys.executable, "-m", "dr_core", "compare", "--help"], capture_output=True, text=True, cwd=REPO
    )
    assert proc.returncode == 0 and "NAME=PATH" in proc.stdout and "trec_eval -c" in proc.stdout
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    section = schema["properties"]["eval"]["properties"]
    args = cli.build_parser().parse_args(["compare", "--qrels", "q", "r"])
    assert args.metrics == DEFAULT_METRICS == section["metrics"]["default"]
    assert args.alpha == section["alpha"]["default"]
