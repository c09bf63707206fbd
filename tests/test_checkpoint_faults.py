"""A checkpoint that cannot be resumed (truncated, not a torch file, keys or shapes that do not fit, another run's)
never traps a run: it is moved aside with a warning naming it and why, and the run trains from step 0 to the very
weights of a run that never had it; the reranker's checkpoints too."""

from __future__ import annotations

import csv
import logging
import random
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import prepare_tokenized, rerank_groups
from safetensors.torch import load_file

from dr_core.model import BiEncoder, EncoderSpec, load_tokenizer
from dr_core.reranker import RerankerSettings, RerankerTrainer
from dr_core.train import Trainer, TrainSettings
from dr_core.train_data import TrainingData

SETTINGS = dict(max_steps=6, batch_size=4, group_size=3, lr=1e-3, checkpoint_every=3, log_every=1)
NEGATIVES = {"q1": ["1007", "1014"], "q3": ["1021"]}


@pytest.fixture(scope="module")
def inputs(tiny_bert, tmp_path_factory) -> Path:
    """The prepared tiny collection, its round-0 bi-encoder, `ref`: a run that never met a checkpoint, and
    `mid_state.pt`: the checkpoint that run left at step 3 (trained moments, random streams moved on)."""
    d = tmp_path_factory.mktemp("ckpt_faults")
    prepare_tokenized(tiny_bert, d)
    spec = EncoderSpec(pooling="mean", q_max_len=16, p_max_len=48)
    BiEncoder.from_base(str(tiny_bert), spec).save(d / "init", load_tokenizer(tiny_bert))
    ref = _trainer(d, "ck_ref")
    save = ref.save_checkpoint

    def save_and_keep() -> None:
        save()
        shutil.copy(d / "ck_ref" / "state.pt", d / "mid_state.pt")

    ref.save_checkpoint = save_and_keep
    ref.train(d / "ref", d / "ref.csv")
    assert torch.load(d / "mid_state.pt", weights_only=False)["step"] == 3
    return d


def _trainer(d: Path, ckpt: str, negatives: dict | None = None) -> Trainer:
    qrels = pd.read_parquet(d / "qrels.parquet")
    settings = TrainSettings(**SETTINGS)
    data = TrainingData(d / "tq.parquet", d / "tc.parquet", qrels, negatives or NEGATIVES)
    return Trainer(d / "init", data, settings, d / ckpt)


def _checkpoint(d: Path, ckpt: str) -> Path:
    """The reference run's checkpoint at step 3 in `d/ckpt`; its path."""
    (d / ckpt).mkdir()
    return shutil.copy(d / "mid_state.pt", d / ckpt / "state.pt")


def _truncated(d: Path, ckpt: str) -> str:
    path = _checkpoint(d, ckpt)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # a disk that filled up mid-write, on a file system without rename
    return "does not load"


def _random_bytes(d: Path, ckpt: str) -> str:
    path = d / ckpt / "state.pt"
    path.parent.mkdir()
    path.write_bytes(random.Random(0).randbytes(4096))
    return "does not load"


def _other_inputs(d: Path, ckpt: str) -> str:
    trainer = _trainer(d, ckpt, negatives={"q1": ["1014"], "q3": ["1021"]})
    trainer.step = 3
    trainer.save_checkpoint()
    return "other settings or inputs"


def _keys_missing(d: Path, ckpt: str) -> str:
    _trainer(d, ckpt).checkpoints.save({"step": 3})  # this run's fingerprint, but no model, optimizer, ...
    return "lacks model, optimizer"


def _other_shapes(d: Path, ckpt: str) -> str:
    path = _checkpoint(d, ckpt)
    state = torch.load(path, weights_only=False)
    key = next(iter(state["model"]))
    state["model"][key] = torch.zeros(3)  # this run's fingerprint, a model that does not fit: the random
    torch.save(state, path)  # streams, restored first, must be put back
    return "does not fit this run"


def _bad_scheduler(d: Path, ckpt: str) -> str:
    path = _checkpoint(d, ckpt)
    state = torch.load(path, weights_only=False)
    state["scheduler"] = None  # fails after the optimizer's moments are loaded: they must be put back
    torch.save(state, path)
    return "does not fit this run"


FAULTS = {
    "truncated": _truncated,
    "random bytes": _random_bytes,
    "other inputs": _other_inputs,
    "keys missing": _keys_missing,
    "other shapes": _other_shapes,
    "bad scheduler": _bad_scheduler,
}


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == "dr_core.checkpoint"]


def _rows(path: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("groups_per_s", "elapsed_s")} for r in csv.DictReader(open(path))]


@pytest.mark.parametrize("fault", FAULTS)
def test_a_bad_checkpoint_is_moved_aside_and_the_run_starts_over(inputs, fault, caplog):
    d = inputs
    ckpt = "ck_" + fault.replace(" ", "_")
    reason = FAULTS[fault](d, ckpt)
    bad = (d / ckpt / "state.pt").read_bytes()
    caplog.set_level(logging.WARNING, logger="dr_core")
    trainer = _trainer(d, ckpt)
    trainer.train(d / ckpt.replace("ck_", "out_"), d / f"{ckpt}.csv")

    warnings = _warnings(caplog)
    assert len(warnings) == 1 and str(d / ckpt / "state.pt") in warnings[0] and reason in warnings[0], warnings
    assert "starting over from step 0" in warnings[0]
    aside = list(d.glob(f"{ckpt}.damaged-*"))
    assert len(aside) == 1 and str(aside[0] / "state.pt") in warnings[0]
    assert (aside[0] / "state.pt").read_bytes() == bad  # kept as it was, for a look
    assert not (d / ckpt).exists()  # the run's own checkpoints were removed at its end

    ref = BiEncoder.load(d / "ref").state_dict()
    got = BiEncoder.load(d / ckpt.replace("ck_", "out_")).state_dict()
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], rtol=0, atol=0)
    assert _rows(d / f"{ckpt}.csv") == _rows(d / "ref.csv") and len(_rows(d / "ref.csv")) == 6


def test_a_checkpoint_that_cannot_be_moved_aside_still_lets_the_run_start_over(inputs, caplog, monkeypatch):
    d = inputs
    _truncated(d, "ck_stuck")
    monkeypatch.setattr(Path, "rename", lambda self, target: (_ for _ in ()).throw(PermissionError(13, "denied")))
    caplog.set_level(logging.WARNING, logger="dr_core")
    trainer = _trainer(d, "ck_stuck")
    assert not trainer.maybe_resume() and trainer.step == 0
    (warning,) = _warnings(caplog)
    assert str(d / "ck_stuck" / "state.pt") in warning and "could not move it aside" in warning


@pytest.fixture(scope="module")
def rerank_data(tmp_path_factory):
    return rerank_groups(tmp_path_factory.mktemp("rerank_faults"), 3)


def _reranker(tiny_bert, data, ckpt: Path) -> RerankerTrainer:
    d, qrels, negatives = data
    settings = RerankerSettings(
        max_steps=6, batch_size=4, group_size=3, lr=1e-3, warmup_ratio=0.0, max_len=48, checkpoint_every=3
    )
    data = TrainingData(d / "queries.parquet", d / "corpus.parquet", qrels, negatives)
    return RerankerTrainer(str(tiny_bert), data, "{title}. {text}", settings, ckpt)


def test_the_rerankers_bad_checkpoint_is_moved_aside_too(tiny_bert, rerank_data, tmp_path, caplog):
    _reranker(tiny_bert, rerank_data, tmp_path / "ck_a").train(tmp_path / "a", tmp_path / "a.csv")
    damaged = tmp_path / "ck_b" / "state.pt"
    trainer = _reranker(tiny_bert, rerank_data, tmp_path / "ck_b")
    trainer.step = 3
    trainer.save_checkpoint()
    damaged.write_bytes(damaged.read_bytes()[:1000])
    caplog.set_level(logging.WARNING, logger="dr_core")
    _reranker(tiny_bert, rerank_data, tmp_path / "ck_b").train(tmp_path / "b", tmp_path / "b.csv")
    (warning,) = _warnings(caplog)
    assert str(damaged) in warning and "does not load" in warning
    assert len(list(tmp_path.glob("ck_b.damaged-*/state.pt"))) == 1
    a, b = (load_file(tmp_path / x / "model.safetensors") for x in "ab")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
