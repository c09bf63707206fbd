"""The cached contrastive loss (train.grad_cache_chunk): the uncached loss's value and gradients, one chunk's
activations at a time; with dropout replayed; with cross-device negatives under DDP (torchrun, gloo)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import torch
from conftest import assert_same_training, prepare_tokenized, train_cli_args

from dr_core.model import BiEncoder, EncoderSpec, load_tokenizer
from dr_core.train import Trainer, TrainSettings
from dr_core.train_data import TrainingData


@pytest.fixture(scope="module")
def d(tiny_bert, tmp_path_factory):
    path = tmp_path_factory.mktemp("grad_cache")
    prepare_tokenized(tiny_bert, path)
    spec = EncoderSpec(pooling="mean", q_max_len=16, p_max_len=48, projection_dim=8)
    BiEncoder.from_base(str(tiny_bert), spec).save(path / "init", load_tokenizer(tiny_bert))
    return path


def _gradients(d, chunk: int | None, dropout: bool) -> tuple[float, dict[str, torch.Tensor]]:
    """Loss and parameter gradients of one batch of 8 groups of 4, the loss backpropagated times 0.5 (as the
    loop does for accumulation and loss scaling)."""
    settings = TrainSettings(batch_size=8, group_size=4, temperature=0.05, grad_cache_chunk=chunk)
    negatives = {"q1": ["1007", "1014", "1021"], "q3": ["1021", "1000"], "q5": ["1000"]}
    data = TrainingData(d / "tq.parquet", d / "tc.parquet", pd.read_parquet(d / "qrels.parquet"), negatives)
    trainer = Trainer(d / "init", data, settings, d / "c")
    task = trainer.task
    task.model.train(dropout)
    task.dataset.set_epoch(0)
    inputs, ids = task.collate([task.dataset[i] for i in range(8)])
    torch.manual_seed(123)
    loss = task.loss(task.model, inputs, ids)
    (loss * 0.5).backward()
    return float(loss), {n: p.grad.clone() for n, p in task.model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("chunk, dropout", [(3, False), (1, False), (8, True)])
def test_cached_loss_has_the_uncached_loss_and_gradients(d, chunk, dropout):
    """Chunks of 3 (3 + 3 + 2 groups) and 1 without dropout; with dropout, one chunk of the whole batch draws
    the masks the uncached forward draws (the replay restores them: a wrong replay breaks the equality)."""
    loss, grads = _gradients(d, None, dropout)
    cached_loss, cached = _gradients(d, chunk, dropout)
    assert cached_loss == pytest.approx(loss, abs=1e-6)
    assert grads.keys() == cached.keys() and len(grads) > 30
    for name, g in grads.items():
        # 1e-5 of the tensor's scale: a gradient summed over every token (token_type_embeddings) differs by
        # float32 summation order alone by more than 1e-5 absolute on some machines (seen in CI)
        scale = max(1.0, float(g.abs().max()))
        torch.testing.assert_close(cached[name], g, rtol=0, atol=1e-5 * scale, msg=name)


def test_a_chunk_below_one_is_refused():
    with pytest.raises(ValueError, match="train.grad_cache_chunk must be null or at least 1"):
        TrainSettings(grad_cache_chunk=0)


@pytest.fixture()
def no_dropout(tiny_bert, tmp_path):
    bert = tmp_path / "bert"
    shutil.copytree(tiny_bert, bert)
    config = json.loads((bert / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (bert / "config.json").write_text(json.dumps(config))
    prepare_tokenized(bert, tmp_path)
    spec = EncoderSpec(pooling="mean", q_max_len=16, p_max_len=48)
    BiEncoder.from_base(str(bert), spec).save(tmp_path / "init", load_tokenizer(bert))
    (tmp_path / "negs.tsv").write_text("q1\t1007,1014,1021\nq3\t1021,1000\nq5\t1000\n")
    return tmp_path


def test_torchrun_world_2_cached_ends_with_the_weights_of_world_1_uncached(no_dropout):
    """Cross-device negatives under DDP (gloo): chunks of 2 groups per rank (4 + 3 rows: 2 + 2 and 2 + 1)."""
    d, env = no_dropout, {**os.environ, "OMP_NUM_THREADS": "1"}
    settings = {"max_steps": 4, "batch_size": 7, "group_size": 3, "lr": 1e-3, "warmup_ratio": 0.0, "log_every": 1}
    one = [sys.executable, "-m", *train_cli_args(d, "one", "ck_one", settings)]
    subprocess.run(one, env=env, check=True, capture_output=True)
    cached = train_cli_args(d, "two", "ck_two", {**settings, "grad_cache_chunk": 2})
    run = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "--", *cached]
    two = subprocess.run(run, env=env, capture_output=True, text=True)
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = BiEncoder.load(d / "one").state_dict(), BiEncoder.load(d / "two").state_dict()
    init = BiEncoder.load(d / "init").state_dict()
    assert_same_training(a, b, init, lr=1e-3, steps=4)
    assert any(not torch.equal(a[k], v) for k, v in init.items())
    assert pd.read_csv(d / "one.csv")["loss"].tolist() == pytest.approx(
        pd.read_csv(d / "two.csv")["loss"].tolist(), rel=1e-4
    )
