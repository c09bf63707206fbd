"""Hand-typed commands (`try`, `push-to-hub`) check the paths they are given before loading anything, and a wrong
one ends in one line saying what exists: the run folders, the rounds with a model, the datasets of a round."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dr_core import cli, tryout
from dr_core.errors import MissingPathError
from dr_core.hub import push_model


@pytest.fixture()
def results(tmp_path, monkeypatch) -> Path:
    """results/ with run `a` (rounds 0-2 with a model, round 1 embedded for scifact and nfcorpus, scifact's corpus,
    a tuned weight for round 2), run `b` (round 0) and a folder that is no run; nothing in them loads."""
    root = tmp_path / "results"
    for run, rounds in (("a", (0, 1, 2)), ("b", (0,))):
        for r in rounds:
            (root / run / f"round{r}" / "model").mkdir(parents=True)
            (root / run / f"round{r}" / "model" / "dr_encoder.json").write_text("{}")
    for dataset in ("scifact", "nfcorpus"):
        (root / "a" / "round1" / dataset / "emb").mkdir(parents=True)
        (root / "a" / "round1" / dataset / "emb" / "shard0.npy").write_bytes(b"")
    (root / "a" / "data" / "scifact").mkdir(parents=True)
    (root / "a" / "data" / "scifact" / "corpus.parquet").write_bytes(b"")
    (root / "a" / "bm25+round2").mkdir()
    (root / "a" / "bm25+round2" / "fusion.json").write_text('{"weight": 0.5}')
    (root / "logs").mkdir()
    (root / "a" / "round1" / "model_card.md").write_text("card")
    monkeypatch.chdir(tmp_path)

    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded before the paths were checked")

    monkeypatch.setattr(tryout, "QueryEncoder", no_loading)
    monkeypatch.setattr(tryout, "open_round_index", no_loading)
    return root


def _try(caplog, *args: str) -> str:
    """The one error line of `python -m dr_core try ...` (in this process); it must fail."""
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="dr_core"):
        assert cli.main(["try", *args]) == 1
    (record,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not record.exc_info  # no traceback
    return record.getMessage()


def test_a_run_folder_that_does_not_exist_lists_the_run_folders(results, caplog):
    message = _try(caplog, "--run-dir", "results/nosuch", "--round", "1", "--dataset", "scifact", "x")
    assert message == "results/nosuch: no such run folder; run folders in results (with round<N>/model): a, b"
    message = _try(caplog, "--run-dir", "elsewhere/a", "--round", "1", "--dataset", "scifact", "x")
    assert message == "elsewhere/a: no such run folder, and no folder elsewhere"


def test_a_round_without_a_model_lists_the_rounds_that_have_one(results, caplog):
    message = _try(caplog, "--run-dir", "results/a", "--round", "7", "--dataset", "scifact", "x")
    assert message == "results/a: round 7 has no model (results/a/round7/model); rounds with a model: 0, 1, 2"
    with pytest.raises(MissingPathError, match="rounds with a model: 0$"):
        tryout.RoundSearcher("results/b", 3, "scifact")


def test_a_dataset_the_round_did_not_embed_lists_those_it_did(results, caplog):
    message = _try(caplog, "--run-dir", "results/a", "--round", "1", "--dataset", "fiqa", "x")
    assert message == (
        "results/a/round1: no corpus embeddings of 'fiqa' (results/a/round1/fiqa/emb/shard*.npy); "
        "datasets round 1 has embeddings of: nfcorpus, scifact"
    )
    message = _try(caplog, "--run-dir", "results/a", "--round", "2", "--dataset", "scifact", "x")
    assert message.endswith("datasets round 2 has embeddings of: none yet (run the round's encode step)")


def test_bm25_and_hybrid_name_the_corpus_and_the_tuned_weights(results, caplog):
    message = _try(caplog, "--run-dir", "results/a", "--system", "bm25", "--dataset", "nfcorpus", "x")
    assert message == (
        "results/a/data/nfcorpus/corpus.parquet: no such corpus; datasets with a corpus in results/a/data: scifact"
    )
    message = _try(caplog, "--run-dir", "results/a", "--system", "hybrid", "--round", "1", "--dataset", "scifact")
    assert message.startswith("results/a/bm25+round1/fusion.json: no tuned weight")
    assert message.endswith("tuned weights: bm25+round2")


def test_another_model_and_a_queries_file_are_checked_too(results, caplog):
    args = ("--run-dir", "results/a", "--round", "1", "--dataset", "scifact")
    assert _try(caplog, *args, "--model", "models/mine", "x") == "--model models/mine: no such folder"
    assert _try(caplog, *args, "--model", "results/a/round1", "x") == (
        "--model results/a/round1: not a bi-encoder folder (no dr_encoder.json)"
    )
    assert _try(caplog, *args, "--queries-file", "q.tsv") == "--queries-file q.tsv: no such file"


def test_the_command_line_says_it_in_one_line(results):
    cmd = [sys.executable, "-m", "dr_core", "try", "--run-dir", "results/a", "--round", "7", "--dataset", "scifact"]
    proc = subprocess.run([*cmd, "x"], capture_output=True, text=True, cwd=results.parent, timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].endswith("ERROR dr_core: results/a: round 7 has no model (results/a/round7/model); "
                             "rounds with a model: 0, 1, 2")  # fmt: skip


def test_push_to_hub_checks_the_model_folder_and_the_card_first(results, monkeypatch):
    monkeypatch.setenv("MY_HUB_TOKEN", "not-a-token")  # nothing reaches the Hub: the paths fail first
    push = dict(repo_id="someone/x", out="push.json", token_env="MY_HUB_TOKEN")
    card = "results/a/round1/model_card.md"
    with pytest.raises(MissingPathError) as info:
        push_model("results/a/round9/model", card, **push)
    assert str(info.value) == (
        "--model results/a/round9/model: no such model folder; model folders in results/a: "
        "round0/model, round1/model, round2/model"
    )
    with pytest.raises(MissingPathError, match="^--model results/a/round1: not a model folder"):
        push_model("results/a/round1", card, **push)
    with pytest.raises(MissingPathError, match="^--card results/a/round1/card.md: no such file"):
        push_model("results/a/round1/model", "results/a/round1/card.md", **push)
    assert not Path("push.json").exists()


def test_push_to_hub_on_the_command_line_is_one_line(results):
    cmd = [sys.executable, "-m", "dr_core", "push-to-hub", "--model", "results/b/round1/model", "--card", "c.md",
           "--repo-id", "someone/x", "--out", "push.json", "--token-env", "MY_HUB_TOKEN"]  # fmt: skip
    env = {**os.environ, "MY_HUB_TOKEN": "not-a-token", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=results.parent, env=env, timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].endswith("no such model folder; model folders in results/b: round0/model")
