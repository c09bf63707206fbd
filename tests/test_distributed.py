"""Two CPU processes (gloo) must compute what one process computes over the same global batch.

Dropout would make the processes draw different masks than the single process (each rank consumes its own
RNG stream for its share of the batch), so these tests use a copy of the tiny BERT with dropout set to 0:
the forward pass is then deterministic in train mode and equality is exact up to float summation order.
"""

import json
import os
import shutil
import socket
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import assert_same_training, prepare_tokenized, train_cli_args
from torch.nn.parallel import DistributedDataParallel

from dr_core.distributed import World, gather_with_grad
from dr_core.loss import group_scores, info_nce, listwise_kl, margin_mse
from dr_core.model import BiEncoder, EncoderSpec, load_tokenizer

B, G, L = 5, 3, 7  # 5 queries split 3 + 2 over two ranks: an uneven split


@pytest.fixture(scope="module")
def no_dropout_bert(tiny_bert, tmp_path_factory):
    path = tmp_path_factory.mktemp("bert_nodrop")
    shutil.copytree(tiny_bert, path, dirs_exist_ok=True)
    config = json.loads((path / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (path / "config.json").write_text(json.dumps(config))
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _loss(q, p, teacher, mask):
    student = group_scores(q, p, G)
    return info_nce(q, p, G, 0.5, mask) + margin_mse(student, teacher) + listwise_kl(student, teacher, 0.7, 2.0)


def _inputs(vocab: int):
    g = torch.Generator().manual_seed(7)
    q_ids = torch.randint(5, vocab, (B, L), generator=g)
    p_ids = torch.randint(5, vocab, (B * G, L), generator=g)
    mask_q, mask_p = torch.ones_like(q_ids), torch.ones_like(p_ids)
    mask_p[::2, -3:] = 0  # some padding
    teacher = torch.randn(B, G, generator=g)
    false_neg = torch.zeros(B, B * G, dtype=torch.bool)
    false_neg[0, G] = True  # passage 3 is relevant to query 0 as well
    return (
        {"input_ids": q_ids, "attention_mask": mask_q},
        {"input_ids": p_ids, "attention_mask": mask_p},
        teacher,
        false_neg,
    )


def _grad_worker(rank: int, world: int, port: int, model_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    try:
        spec = EncoderSpec(pooling="mean", untied=True, projection_dim=6)
        torch.manual_seed(0)
        model = BiEncoder.from_base(model_dir, spec)
        queries, passages, teacher, false_neg = _inputs(model.query_model.config.vocab_size)
        # one process over the whole batch: the reference
        ref = BiEncoder.from_base(model_dir, spec)
        ref.load_state_dict(model.state_dict())
        ref_loss = _loss(*ref(queries, passages), teacher, false_neg)
        ref_loss.backward()
        # this rank's share, gathered across ranks, loss scaled by the world size
        rows = np.array_split(np.arange(B), world)[rank]
        prows = np.concatenate([np.arange(i * G, (i + 1) * G) for i in rows])
        ddp = DistributedDataParallel(model)
        q, p = ddp({k: v[rows] for k, v in queries.items()}, {k: v[prows] for k, v in passages.items()})
        q, p = gather_with_grad(q, World(rank, world)), gather_with_grad(p, World(rank, world))
        loss = _loss(q, p, teacher, false_neg) * world
        loss.backward()
        assert (loss / world).item() == pytest.approx(ref_loss.item(), abs=1e-5)
        trained = [(n, w) for n, w in ref.named_parameters() if w.requires_grad]
        assert len(trained) > 30
        mine = dict(model.named_parameters())
        for name, w in trained:
            scale = max(1.0, float(w.grad.abs().max()))  # float32 summation order: 1e-5 of the tensor's scale
            torch.testing.assert_close(mine[name].grad, w.grad, rtol=0, atol=1e-5 * scale, msg=name)
    finally:
        dist.destroy_process_group()


def test_two_processes_give_the_loss_and_gradients_of_one(no_dropout_bert):
    mp.spawn(_grad_worker, args=(2, _free_port(), str(no_dropout_bert)), nprocs=2, join=True)


@pytest.fixture()
def train_inputs(no_dropout_bert, tmp_path):
    prepare_tokenized(no_dropout_bert, tmp_path)
    tok = load_tokenizer(no_dropout_bert)
    spec = EncoderSpec(pooling="mean", q_max_len=16, p_max_len=48)
    BiEncoder.from_base(str(no_dropout_bert), spec).save(tmp_path / "init", tok)
    (tmp_path / "negs.tsv").write_text("q1\t1007,1014,1021\nq3\t1021,1000\nq5\t1000\n")
    return tmp_path


def _train_args(d, out):
    """CLI arguments after `python -m` / `torchrun ... -m --` (the `--` keeps torchrun's parser off `--log`)."""
    # 16 train queries, batch 7: global batches 7, 7, 2, split 4+3, 4+3, 1+1 over two ranks
    settings = {"max_steps": 6, "batch_size": 7, "group_size": 3, "lr": 1e-3, "warmup_ratio": 0.0, "log_every": 1}
    return train_cli_args(d, out, f"ck_{out}", settings)


def test_torchrun_world_2_ends_with_the_weights_of_world_1(train_inputs):
    d = train_inputs
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # stderr to a file, not a pipe: a pipe nobody reads while `two` runs blocks `one` once it fills (64 KB)
    one_err = d / "one.stderr"
    with open(one_err, "wb") as err:
        one = subprocess.Popen([sys.executable, "-m", *_train_args(d, "one")], env=env, stderr=err)
    two = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            "-m",
            "--",
            *_train_args(d, "two"),
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert one.wait() == 0, one_err.read_text()[-3000:]
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = BiEncoder.load(d / "one").state_dict(), BiEncoder.load(d / "two").state_dict()
    init = BiEncoder.load(d / "init").state_dict()
    assert_same_training(a, b, init, lr=1e-3, steps=6)
    assert any(not torch.equal(a[k], v) for k, v in init.items())  # it trained
    log_one, log_two = pd.read_csv(d / "one.csv"), pd.read_csv(d / "two.csv")
    np.testing.assert_allclose(log_one["loss"], log_two["loss"], rtol=1e-4)
    assert json.loads((d / "two" / "dr_training.json").read_text())["world_size"] == 2
    assert not (d / "ck_two").exists()
