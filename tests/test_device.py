"""dr_core.device without a GPU: the local rank's device, fp32 on the CPU (half precision refused), autocast only
for half precision; the training runtime and the encoder follow it. CUDA itself is faked where a test needs its
answers (tests/test_cuda.py runs the real thing where there is a GPU)."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

from dr_core import device as dev
from dr_core.batching import Padder
from dr_core.encode import embed
from dr_core.model import BiEncoder, EncoderSpec, load_tokenizer
from dr_core.train import TrainSettings
from dr_core.train_loop import start_runtime

CPU, CUDA = torch.device("cpu"), torch.device("cuda", 0)


@pytest.fixture()
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)


@pytest.mark.parametrize("local_rank", [None, "0", "3"])
def test_without_cuda_every_rank_computes_on_the_cpu(no_cuda, monkeypatch, local_rank):
    if local_rank is None:
        monkeypatch.delenv("LOCAL_RANK", raising=False)
    else:
        monkeypatch.setenv("LOCAL_RANK", local_rank)
    assert dev.pick_device() == CPU


@pytest.mark.parametrize("local_rank, index", [(None, 0), ("0", 0), ("1", 1), ("7", 7)])
def test_with_cuda_the_local_rank_picks_its_gpu(monkeypatch, local_rank, index):
    """torchrun starts one process per GPU and tells each its LOCAL_RANK; a plain run (none) takes GPU 0."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    if local_rank is None:
        monkeypatch.delenv("LOCAL_RANK", raising=False)
    else:
        monkeypatch.setenv("LOCAL_RANK", local_rank)
    assert dev.pick_device() == torch.device("cuda", index)


def test_the_cpu_computes_in_fp32_and_refuses_half_precision():
    assert dev.resolve_precision("auto", CPU) == "fp32"
    assert dev.resolve_precision("fp32", CPU) == "fp32"
    for half in ("fp16", "bf16"):
        with pytest.raises(ValueError, match=f"precision '{half}' needs CUDA; on CPU use fp32"):
            dev.resolve_precision(half, CPU)
    for device in (CPU, CUDA):
        with pytest.raises(ValueError, match=r"precision must be one of \('auto', 'fp32', 'fp16', 'bf16'\), not 'fp8'"):
            dev.resolve_precision("fp8", device)


@pytest.mark.parametrize("bf16_supported, auto", [(True, "bf16"), (False, "fp16")])
def test_on_cuda_auto_is_bf16_where_supported_else_fp16_and_a_choice_is_kept(monkeypatch, bf16_supported, auto):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16_supported)
    assert dev.resolve_precision("auto", CUDA) == auto
    for chosen in ("fp32", "fp16", "bf16"):
        assert dev.resolve_precision(chosen, CUDA) == chosen


@pytest.mark.filterwarnings("ignore:CUDA is not available:UserWarning")  # a CUDA autocast made on a CPU machine
def test_autocast_is_a_no_op_in_fp32_and_casts_matmuls_in_half_precision():
    a, b = torch.randn(4, 8), torch.randn(8, 3)
    fp32 = dev.autocast("fp32", CPU)
    assert isinstance(fp32, contextlib.nullcontext)
    with fp32:
        assert (a @ b).dtype == torch.float32
    with dev.autocast("bf16", CPU):  # CPU autocast exists; resolve_precision just never chooses it
        assert (a @ b).dtype == torch.bfloat16
    for precision, dtype in (("fp16", torch.float16), ("bf16", torch.bfloat16)):
        ctx = dev.autocast(precision, CUDA)
        assert isinstance(ctx, torch.autocast) and ctx.device == "cuda" and ctx.fast_dtype == dtype


def test_training_on_the_cpu_runs_in_fp32_and_refuses_half_precision(no_cuda):
    runtime = start_runtime(TrainSettings())  # precision auto
    assert (runtime.device, runtime.precision, runtime.world.size) == (CPU, "fp32", 1)
    for half in ("fp16", "bf16"):
        with pytest.raises(ValueError, match=f"precision '{half}' needs CUDA"):
            start_runtime(TrainSettings(precision=half))


def test_encoding_on_the_cpu_is_fp32_and_refuses_half_precision(tiny_bert):
    tok = load_tokenizer(tiny_bert)
    model = BiEncoder.from_base(str(tiny_bert), EncoderSpec(pooling="mean", p_max_len=32)).eval()
    rows = [np.array(tok(t, add_special_tokens=False)["input_ids"]) for t in ["whale song", "solar panel cells"]]
    padder = Padder(tok, 32)
    auto = embed(model, padder, rows, is_query=False, batch_size=2)
    assert auto.dtype == np.float32
    np.testing.assert_array_equal(auto, embed(model, padder, rows, is_query=False, batch_size=2, precision="fp32"))
    for half in ("fp16", "bf16"):
        with pytest.raises(ValueError, match=f"precision '{half}' needs CUDA"):
            embed(model, padder, rows, is_query=False, batch_size=2, precision=half)
