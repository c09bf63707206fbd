"""Denoising mined negatives with teacher scores, on a hand-built case."""

from __future__ import annotations

import pytest

from dr_core.denoise import denoise

NEGATIVES = {"q1": ["a", "b", "c", "d"], "q2": ["e", "f"], "q3": ["g"]}
POSITIVES = {"q1": {"p1", "p2"}, "q2": {"p3"}, "q3": {"p4"}}
SCORES = {
    "q1": {"p1": 5.0, "p2": 3.0, "a": 4.0, "b": 2.5, "c": 1.0},  # d unscored; weakest positive 3.0
    "q2": {"p3": 1.0, "e": 0.9, "f": -2.0},
    "q3": {"g": 9.0},  # positive unscored: the list stays
}


def test_margin_drops_negatives_close_to_the_weakest_positive():
    kept, stats = denoise(NEGATIVES, POSITIVES, SCORES, margin=1.0)
    # q1: ceiling 3.0 - 1.0 = 2.0 -> a (4.0) and b (2.5) go, c stays, d (unscored) stays
    assert kept == {"q1": ["c", "d"], "q2": ["f"], "q3": ["g"]}
    assert (stats.queries, stats.kept, stats.dropped, stats.unscored) == (3, 4, 3, 1)
    assert stats.dropped_fraction == pytest.approx(3 / 7)


def test_zero_margin_keeps_a_negative_scored_exactly_at_the_positive_minus_margin():
    kept, _ = denoise({"q": ["x", "y"]}, {"q": {"p"}}, {"q": {"p": 2.0, "x": 2.0, "y": 2.0001}}, margin=0.0)
    assert kept == {"q": ["x"]}


def test_max_score_alone_and_with_margin():
    kept, _ = denoise(NEGATIVES, POSITIVES, SCORES, margin=None, max_score=1.5)
    assert kept == {"q1": ["c", "d"], "q2": ["e", "f"], "q3": []}
    kept, _ = denoise(NEGATIVES, POSITIVES, SCORES, margin=0.2, max_score=10.0)
    assert kept["q2"] == ["f"] and kept["q1"] == ["b", "c", "d"]


def test_no_filter_keeps_everything_and_negative_margin_is_refused():
    kept, stats = denoise(NEGATIVES, POSITIVES, SCORES, margin=None)
    assert kept == NEGATIVES and stats.dropped == 0
    with pytest.raises(ValueError, match="negatives.denoise.margin"):
        denoise(NEGATIVES, POSITIVES, SCORES, margin=-0.1)


def test_denoise_rule_filters_round1_negatives_with_the_teacher(fixture_run, tmp_path):
    from conftest import copy_run, snakemake_in
    from test_workflow import planned_jobs, write_config

    from dr_core.data.formats import read_negatives

    config = write_config(
        tmp_path,
        **{"distill.teacher": "pkg:cognition/model", "distill.kind": "bi", "negatives.denoise.margin": 0.0},
    )
    work = copy_run(fixture_run, tmp_path / "run")  # the data and round 1's BM25 negatives reused
    plan = snakemake_in(work, "-n", "results/tiny/round1/model", config=config)
    assert {"denoise", "teacher_scores", "train"} <= planned_jobs(plan.stdout).keys()
    target = "results/tiny/round1/train_negatives.denoised.tsv"
    snakemake_in(work, "--cores", "2", target, config=config)
    raw = read_negatives(work / "results/tiny/round1/train_negatives.tsv")
    kept = read_negatives(work / target)
    assert kept.keys() <= raw.keys()
    for qid, pids in kept.items():
        assert pids == [p for p in raw[qid] if p in set(pids)]  # a subset, in the same order
    dropped = sum(map(len, raw.values())) - sum(map(len, kept.values()))
    assert dropped > 0
    assert f"dropped {dropped} " in (work / "results/tiny/logs/denoise/round1.log").read_text()


def test_negative_denoise_margin_is_a_schema_error(tmp_path):
    from test_workflow import snakemake, write_config

    config = write_config(tmp_path, **{"distill.teacher": "pkg:cognition/model", "negatives.denoise.margin": -1.0})
    proc = snakemake("-n", "--configfile", str(config), "--directory", str(tmp_path), check=False)
    assert proc.returncode != 0 and "margin" in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()
