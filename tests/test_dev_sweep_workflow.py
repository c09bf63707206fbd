"""The dev-choice recipe (a carved dev split, rounds until dev stops improving, the false-negative filter on both
stages, a merged model, hybrids) run once as a sweep over how many negatives round 2 on mines (its variants share
round 1) from a copy of the fixture run; the dev-choice test reads its base variant's files, the sweep test its
comparison. One module, so that pytest-xdist (--dist loadfile) gives both tests, and the run, to one worker."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import copy_run, snakemake_in, write_config
from test_sweep_workflow import SHARED, planned_files
from test_workflow import planned_jobs

from dr_core.selection import select_round

DEV_RECIPE = {
    "data.dev": {"count": 4, "seed": 0},
    # min_delta 1 (nDCG can never gain 1): no round improves, so patience 2 trains rounds 1 and 2, then stops
    "ance.rounds": {"max": 3, "patience": 2, "min_delta": 1.0},
    "negatives.first_stage": {"depth": 20, "rank_min": 1, "rank_max": 20, "n": 8, "filter": {"relative": 0.95}},
    "negatives.mine": {"depth": 20, "rank_min": 2, "rank_max": 20, "n": 8, "filter": {"relative": 0.95}},
    "merge": {"rounds": ["selected"], "alpha": 0.5},
    "hybrid": {"rounds": ["selected", "wise-selected"], "depth": 20},
}
# DEV_RECIPE's 8 mined negatives a query: the base. A mining-only grid shares round 1 between its variants, so the
# real run checks that sharing and costs two rounds less than a grid over training keys; the 2 x 2 grid's plan is
# checked by a dry run (tests/test_sweep_workflow.py).
SWEEP_GRID = {"negatives.mine.n": [8, 6]}


@pytest.fixture(scope="module")
def dev_sweep_run(fixture_run, tmp_path_factory) -> tuple[Path, Path, str]:
    """(repository copy, recipe, printed output) of the dev-choice recipe (DEV_RECIPE: a carved dev split, rounds
    until dev stops improving, the filter on both stages, a merged model, hybrids) run as a sweep (SWEEP_GRID)
    from a copy of the fixture run. Its base variant is the recipe itself, in the base paths: the
    dev-choice test reads those, the sweep test the comparison. One run for both saves a run of the base."""
    tmp = tmp_path_factory.mktemp("dev_sweep")
    config = write_config(tmp, **DEV_RECIPE, sweep={"grid": SWEEP_GRID})
    repo = copy_run(fixture_run, tmp / "run")
    return repo, config, snakemake_in(repo, "--cores", "2", config=config).stdout


@pytest.mark.slow
def test_dev_choices_on_the_fixture(dev_sweep_run):
    """The base variant of dev_sweep_run: the dev-choice recipe's own files, in the recipe's own paths."""
    work, config, _ = dev_sweep_run
    out = work / "results" / "tiny"

    # The 4 dev queries are in no training input: train qrels, BM25's train run, any round's negatives.
    dev = set(pd.read_parquet(out / "data" / "tiny" / "qrels.dev.parquet")["qid"])
    train = set(pd.read_parquet(out / "data" / "tiny" / "qrels.train.parquet")["qid"])
    assert len(dev) == 4 and len(train) == 12 and not dev & train
    bm25_train = pd.read_csv(out / "bm25" / "tiny" / "run.train.trec", sep=" ", header=None, dtype=str)
    assert not dev & set(bm25_train[0])
    for r in (1, 2):
        negatives = (out / f"round{r}" / "train_negatives.tsv").read_text().split("\n")
        assert not dev & {line.split("\t")[0] for line in negatives if line}
        positives = pd.read_csv(out / f"round{r}" / "positive_scores.tsv", sep="\t", header=None, dtype=str)
        assert set(positives[0]) <= train

    # The stopping rule trained exactly rounds 1 and 2; each decision is the rule applied to the dev figures.
    assert sorted(p.name for p in out.glob("round[0-9]*")) == ["round0", "round1", "round2"]
    decisions = [json.loads((out / "rounds" / f"decision{r}.json").read_text()) for r in range(3)]
    assert [d["continue"] for d in decisions] == [True, True, False]
    devs = [
        json.loads((out / f"round{r}" / "tiny" / "metrics.dev.json").read_text())["metrics"]["ndcg@10"]
        for r in range(3)
    ]
    assert decisions[2]["dev"] == pytest.approx(devs)
    choice = json.loads((out / "selected" / "choice.json").read_text())
    assert choice["round"] == select_round(devs)

    # The positives' scores are the scores the mining model's run gives them (round 2's: round 1's run).
    run1 = pd.read_csv(
        out / "round1" / "tiny" / "run.train.trec", sep=" ", header=None, names=list("qzdrst"), dtype=str
    )
    pos = pd.read_csv(out / "round2" / "positive_scores.tsv", sep="\t", header=None, names=["q", "d", "p"], dtype=str)
    both = pos.merge(run1, on=["q", "d"])
    assert len(both) > 0 and np.allclose(both["p"].astype(float), both["s"].astype(float), atol=1e-4)
    log = (out / "logs" / "negatives" / "round1.log").read_text()
    assert "filter (relative 0.95" in log

    # selected is the chosen round's run, retagged; the summary has every system, with p-values.
    chosen = pd.read_csv(out / f"round{choice['round']}" / "tiny" / "run.test.trec", sep=" ", header=None)
    selected = pd.read_csv(out / "selected" / "tiny" / "run.test.trec", sep=" ", header=None)
    assert selected[[0, 2, 3]].equals(chosen[[0, 2, 3]]) and set(selected[5]) == {"selected"}
    summary = pd.read_csv(out / "summary.tsv", sep="\t")
    assert summary["system"].tolist() == [
        "bm25", "round0", "round1", "round2", "selected", "wise-selected", "bm25+selected", "bm25+wise-selected"
    ]  # fmt: skip
    assert (out / "wise-selected" / "model" / "dr_meta.json").exists()
    assert json.loads((out / "bm25+selected" / "fusion.json").read_text())["queries"] == 4  # tuned on dev

    # A rerun has nothing to do.
    assert "Nothing to be done" in snakemake_in(work, "-n", config=config).stdout


@pytest.mark.slow
def test_a_sweep_runs_and_compares_its_variants(dev_sweep_run, tmp_path):
    """dev_sweep_run (the dev-choice recipe swept over round 2's mining) for real: the variants share round 1's
    files, sweep.tsv has a row per variant (in the grid's order), each row's selected round and dev figure are its
    variant's choice, the best is the dev argmax, a second run does nothing, and an added variant plans only its
    own steps. On the fixture's 4 dev queries every variant selects round 0 (training lowers dev here), so `best`
    is the tie going to the base; tests/test_sweep.py checks the argmax on figures that differ."""
    repo, config, printed = dev_sweep_run
    names = [f"n={n}" for n in SWEEP_GRID["negatives.mine.n"]]
    out = repo / "results" / "tiny"
    variant = out / "variants" / names[1]
    assert not (variant / "round1").exists() and (variant / "round2" / "model").is_dir()  # round 1 is shared
    for folder, n in zip((out, variant), SWEEP_GRID["negatives.mine.n"]):  # each mined round 2 with its own n
        lines = (folder / "round2" / "train_negatives.tsv").read_text().split("\n")
        assert max(len(line.split("\t")[1].split(",")) for line in lines if line) == n
    table = pd.read_csv(out / "sweep.tsv", sep="\t", keep_default_na=False)
    assert list(table["variant"]) == names and "sweep.tsv" in printed
    dev = {}
    for name, row in zip(names, table.to_dict("records")):
        folder = out if name == names[0] else out / "variants" / name
        choice = json.loads((folder / "selected" / "choice.json").read_text())
        dev[name] = choice["dev"][choice["round"]]
        assert row["selected"] == choice["round"] and row["dev_ndcg@10"] == pytest.approx(dev[name], abs=1e-4)
        assert (folder / "summary.tsv").exists()
    best = max(names, key=lambda n: (dev[n], -names.index(n)))
    assert list(table.loc[table["best"] == "*", "variant"]) == [best]
    assert table.loc[0, f"p_vs_{names[0]}"] == ""  # the base against itself
    assert (out / "report" / "sweep_dev.png").stat().st_size > 0
    assert "Nothing to be done" in snakemake_in(repo, "-n", config=config).stdout
    text = config.read_text()
    added = yaml.safe_load(text)
    added["sweep"]["variants"] = {"lr3": {"train": {"lr": 3.0e-4}}}
    config.write_text(yaml.safe_dump(added))  # the same file, as a user adds a variant
    try:
        proc = snakemake_in(repo, "-n", config=config)
    finally:
        config.write_text(text)
    jobs = planned_jobs(proc.stdout)
    comparison = {"results/tiny/sweep.tsv", "results/tiny/report/sweep.html", "results/tiny/report/sweep_dev.png"}
    planned = planned_files(proc.stdout) - comparison
    # its rounds are decided on dev (checkpoints): the dry run plans its first decision and its selection
    assert jobs["round_decision"] == 1 and jobs["summary"] == 1 and not set(SHARED) & set(jobs)
    assert planned and all("/variants/lr3/" in f for f in planned)
