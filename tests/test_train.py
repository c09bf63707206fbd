import csv
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch
import yaml
from conftest import REPO, prepare_tokenized, train_cli_args

from dr_core.dro import DroSettings
from dr_core.model import BiEncoder, EncoderSpec, load_tokenizer
from dr_core.train import Trainer, TrainSettings
from dr_core.train_data import TrainingData


@pytest.fixture()
def train_inputs(tiny_bert, tmp_path):
    prepare_tokenized(tiny_bert, tmp_path)
    tok = load_tokenizer(tiny_bert)
    spec = EncoderSpec(pooling="mean", q_max_len=16, p_max_len=48)  # a random BERT's CLS barely depends on the input
    BiEncoder.from_base(str(tiny_bert), spec).save(tmp_path / "init", tok)
    return tmp_path


def _trainer(d, settings, ckpt="ckpt"):
    qrels = pd.read_parquet(d / "qrels.parquet")
    negatives = {"q1": ["1007", "1014"], "q3": ["1021"]}
    return Trainer(d / "init", TrainingData(d / "tq.parquet", d / "tc.parquet", qrels, negatives), settings, d / ckpt)


def test_training_lowers_the_loss_and_saves_a_loadable_model(train_inputs):
    d = train_inputs
    settings = TrainSettings(
        epochs=10, batch_size=4, group_size=3, lr=1e-3, temperature=0.1, log_every=1, warmup_ratio=0.0
    )
    trainer = _trainer(d, settings)
    before = trainer.evaluate(trainer.task.dataset)  # the training groups, no dropout
    trainer.train(d / "model", d / "log.csv")
    after = trainer.evaluate(trainer.task.dataset)
    assert after < 0.6 * before
    rows = list(csv.DictReader(open(d / "log.csv")))
    assert [int(r["step"]) for r in rows] == list(range(1, 41))  # 16 train queries / 4 per step * 10 epochs
    meta = json.loads((d / "model" / "dr_training.json").read_text())
    assert meta["train"]["lr"] == 1e-3 and meta["steps"] == 40
    assert BiEncoder.load(d / "model").spec.p_max_len == 48
    assert not (d / "ckpt").exists()  # checkpoints are removed once the model is saved


def test_a_log_row_holds_the_mean_loss_of_the_steps_since_the_last_row(train_inputs):
    """As the HF Trainer logs: with log_every 2, each row's loss is the mean of the per-step losses that the same
    run (same seed) logs with log_every 1; the last row closes a shorter interval."""
    d = train_inputs
    base = dict(max_steps=5, batch_size=4, group_size=3, lr=1e-3, warmup_ratio=0.0, seed=3)
    losses = {}
    for every in (1, 2):
        trainer = _trainer(d, TrainSettings(**base, log_every=every), str(d / f"ck_every{every}"))
        trainer.train(d / f"model{every}", d / f"log{every}.csv")
        rows = list(csv.DictReader(open(d / f"log{every}.csv")))
        losses[every] = {int(r["step"]): float(r["loss"]) for r in rows}
    step = losses[1]
    assert list(step) == [1, 2, 3, 4, 5] and len(set(step.values())) == 5
    assert list(losses[2]) == [2, 4, 5]
    want = [(step[1] + step[2]) / 2, (step[3] + step[4]) / 2, step[5]]
    assert list(losses[2].values()) == pytest.approx(want, rel=1e-6)


@pytest.mark.slow
def test_compiled_training_has_the_uncompiled_losses_dropout_included(train_inputs):
    """train.compile: the steps run through compiled graphs (dynamo compiled some) and, dropout on, each step's
    loss is the uncompiled run's within float tolerance: the random operators fall back to torch's generator, so
    the masks are the same."""
    from torch._dynamo.utils import counters

    d = train_inputs
    base = dict(max_steps=3, batch_size=4, group_size=3, lr=1e-3, warmup_ratio=0.0, log_every=1, checkpoint_every=0)
    losses, graphs = {}, {}
    for compiled in (False, True):
        before = counters["stats"]["unique_graphs"]
        trainer = _trainer(d, TrainSettings(**base, compile=compiled), ckpt=f"ckpt{compiled}")
        trainer.train(d / f"model{compiled}", d / f"log{compiled}.csv")
        graphs[compiled] = counters["stats"]["unique_graphs"] - before
        losses[compiled] = [float(r["loss"]) for r in csv.DictReader(open(d / f"log{compiled}.csv"))]
    assert graphs[False] == 0 and graphs[True] > 0
    assert len(losses[True]) == 3 and losses[True] == pytest.approx(losses[False], rel=1e-4)
    assert torch.allclose(
        BiEncoder.load(d / "modelTrue").query_model.embeddings.word_embeddings.weight,
        BiEncoder.load(d / "modelFalse").query_model.embeddings.word_embeddings.weight,
        atol=1e-5,
    )


def test_a_step_the_fp16_scaler_skips_does_not_advance_the_schedule(train_inputs):
    """An overflowing fp16 step (inf gradients) leaves the weights and the learning-rate schedule where they
    were, as the scaler's skip intends; a finite one moves both. (The scaler runs on the CPU here.)"""
    import torch

    trainer = _trainer(train_inputs, TrainSettings(max_steps=4, batch_size=4, group_size=3, warmup_steps=2))
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    trainer.scaler.scale(torch.ones(()))  # the scale is made lazily, at the first loss scaled
    params = [p for p in trainer.task.model.parameters() if p.requires_grad]
    before = params[0].detach().clone()
    for p in params:
        p.grad = torch.full_like(p, float("inf"))
    trainer._optimizer_step()
    assert trainer.scheduler.last_epoch == 0 and trainer.scaler.get_scale() == 2.0**9
    torch.testing.assert_close(params[0].detach(), before)
    for p in params:
        p.grad = torch.ones_like(p)
    trainer._optimizer_step()
    assert trainer.scheduler.last_epoch == 1 and not torch.equal(params[0].detach(), before)


def test_a_checkpoint_is_resumed_only_with_the_inputs_it_was_trained_on(train_inputs):
    d = train_inputs
    settings = TrainSettings(max_steps=8, batch_size=4, group_size=3, checkpoint_every=4)
    trainer = _trainer(d, settings)
    trainer.step = 4
    trainer.save_checkpoint()
    assert _trainer(d, settings).maybe_resume()
    qrels = pd.read_parquet(d / "qrels.parquet")
    data = TrainingData(d / "tq.parquet", d / "tc.parquet", qrels, {"q1": ["1014"], "q3": ["1021"]})
    other = Trainer(d / "init", data, settings, d / "ckpt")
    assert not other.maybe_resume()  # the negatives changed since the checkpoint: moved aside
    assert not (d / "ckpt").exists() and len(list(d.glob("ckpt.damaged-*/state.pt"))) == 1
    trainer.save_checkpoint()
    (d / "init" / "extra.txt").write_text("the previous round was retrained\n")
    assert not _trainer(d, settings).maybe_resume()
    assert not (d / "ckpt").exists() and len(list(d.glob("ckpt.damaged-*/state.pt"))) == 2


def _train_cmd(d, out, ckpt, settings):
    return [sys.executable, "-m", *train_cli_args(d, out, ckpt, settings)]


def test_sigkill_mid_run_then_resume_ends_with_the_same_weights(train_inputs):
    d = train_inputs
    (d / "negs.tsv").write_text("q1\t1007,1014\nq3\t1021\n")
    settings = {"max_steps": 240, "batch_size": 4, "group_size": 3, "lr": 1e-3, "checkpoint_every": 20}
    subprocess.run(_train_cmd(d, "a", "ck_a", settings), check=True, capture_output=True)

    proc = subprocess.Popen(_train_cmd(d, "b", "ck_b", settings), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (d / "ck_b" / "state.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (d / "b").exists(), "killed before the end: no model may look finished"
    step = torch.load(d / "ck_b" / "state.pt", weights_only=False)["step"]
    assert 0 < step < 240
    resumed = subprocess.run(_train_cmd(d, "b", "ck_b", settings), check=True, capture_output=True, text=True)
    # the rerun took up the checkpoint's step (a restart from 0 ends with the same weights, so they cannot tell)
    assert f"resumed from {d / 'ck_b' / 'state.pt'} at step {step} of 240" in resumed.stderr, resumed.stderr[-2000:]

    a, b = BiEncoder.load(d / "a").state_dict(), BiEncoder.load(d / "b").state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    rows_a, rows_b = (list(csv.DictReader(open(d / f"{x}.csv"))) for x in "ab")
    assert [r["loss"] for r in rows_a] == [r["loss"] for r in rows_b]


def test_distillation_with_validation_lamb_and_tensorboard(train_inputs):
    d = train_inputs
    qrels = pd.read_parquet(d / "qrels.parquet")
    docs = pd.read_parquet(d / "corpus.parquet")["id"].tolist()
    pos = qrels[qrels["rel"] > 0].groupby("qid")["docid"].agg(list).to_dict()
    negatives = {q: [x for x in docs if x not in p][:6] for q, p in pos.items()}
    teacher = {
        q: {**{x: 8.0 for x in p}, **{x: float(i % 3) for i, x in enumerate(negatives[q])}} for q, p in pos.items()
    }
    settings = TrainSettings(
        max_steps=6,
        batch_size=4,
        group_size=3,
        lr=1e-2,
        optimizer="lamb",
        warmup_ratio=0.0,
        contrastive_weight=0.0,
        margin_mse_weight=1.0,
        kl_weight=0.5,
        teacher_temperature=2.0,
        sample_neg_from_topk=4,
        val_queries=4,
        eval_every=2,
        log_every=3,
        tensorboard=True,
    )
    with pytest.raises(ValueError, match="teacher scores"):
        Trainer(d / "init", TrainingData(d / "tq.parquet", d / "tc.parquet", qrels, negatives), settings, d / "ck")
    data = TrainingData(d / "tq.parquet", d / "tc.parquet", qrels, negatives, teacher_scores=teacher)
    trainer = Trainer(d / "init", data, settings, d / "ck")
    assert len(trainer.task.dataset) == 12 and len(trainer.task.val_dataset) == 4  # 16 train queries, 4 held out
    val_qids = {trainer.task.val_dataset.sampler.examples[i].qid for i in range(4)}
    assert val_qids.isdisjoint(ex.qid for ex in trainer.task.dataset.sampler.examples)
    assert all(len(ex.negatives) <= 4 for ex in trainer.task.dataset.sampler.examples)
    first = trainer.evaluate()  # the held-out groups
    trainer.train(d / "model", d / "log.csv")
    rows = list(csv.DictReader(open(d / "log.csv")))
    assert [r["step"] for r in rows] == ["2", "3", "4", "6"]
    assert [bool(r["val_loss"]) for r in rows] == [True, False, True, True]
    assert float(rows[-1]["val_loss"]) < first
    assert list((d / "model_tensorboard").glob("events.out.tfevents.*"))


def test_dro_weights_are_logged_and_every_train_query_needs_a_cluster(train_inputs):
    d = train_inputs
    qrels = pd.read_parquet(d / "qrels.parquet")
    qids = sorted(set(qrels[qrels["rel"] > 0]["qid"]))
    clusters = {q: i % 2 for i, q in enumerate(qids)}
    settings = TrainSettings(max_steps=3, batch_size=4, group_size=2, log_every=1)
    data = TrainingData(d / "tq.parquet", d / "tc.parquet", qrels, {})
    with pytest.raises(ValueError, match="1 train queries have no cluster"):
        fewer = dataclasses.replace(data, clusters=dict(list(clusters.items())[1:]))
        Trainer(d / "init", fewer, settings, d / "ck", dro=DroSettings(type="greedy", num_clusters=2))
    data = dataclasses.replace(data, clusters=clusters)
    trainer = Trainer(d / "init", data, settings, d / "ck", dro=DroSettings(type="idro", num_clusters=2))
    trainer.train(d / "model", d / "log.csv")
    rows = list(csv.DictReader(open(d / "log.csv")))
    assert len(rows) == 3 and {"cluster_weight_0", "cluster_weight_1", "dro/max_weight"} <= set(rows[0])
    assert float(rows[-1]["cluster_weight_0"]) + float(rows[-1]["cluster_weight_1"]) == pytest.approx(1.0, abs=1e-5)


def test_train_settings_defaults_are_the_schemas():
    """One home for each default: the schema documents TrainSettings' defaults, key for key."""
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    documented = {k: v["default"] for k, v in schema["properties"]["train"]["properties"].items()}
    assert documented == {f.name: f.default for f in dataclasses.fields(TrainSettings)}
