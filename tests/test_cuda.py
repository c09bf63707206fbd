"""The GPU paths, where there is a CUDA GPU (skipped elsewhere): the torch exact index against faiss's exact search,
one bf16 training step through the train loop, and GPU encoding against CPU encoding. Each is the CPU test of the
same code (tests/test_index_search.py, test_train.py, test_tokenize_bm25_encode.py, test_device.py) run on CUDA."""

from __future__ import annotations

import csv
import math

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import prepare_tokenized

from dr_core.batching import Padder
from dr_core.encode import EncodeSettings, embed, encode_corpus_shard
from dr_core.model import BiEncoder, EncoderSpec, load_tokenizer
from dr_core.search import rank_rows, tie_keys
from dr_core.tokenization import TokenStore

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch.cuda.is_available())")


def test_torch_flat_on_the_gpus_returns_faiss_exact_top_k(monkeypatch):
    """TorchFlat on every GPU and as two shards of GPU 0, score slices of 1,024 rows, k above a slice and above
    the vectors: the ranked rows of faiss's IndexFlatIP on the CPU (near-ties aside), fp16 storage close; and
    `to_gpus` hands an exact index to it."""
    import faiss

    from dr_core import search, torch_flat

    rng = np.random.default_rng(0)
    x = rng.normal(size=(5000, 24)).astype(np.float32)
    x[4000:4010] = x[10]  # ties across the shards and slices
    q = rng.normal(size=(40, 24)).astype(np.float32)
    q[0] = x[10]
    flat = faiss.IndexFlatIP(24)
    flat.add(x)
    keys = tie_keys(np.array([f"d{i}" for i in range(len(x))]))
    monkeypatch.setattr(torch_flat, "SCORE_BUDGET", 40 * 1024)  # 1,024 rows a product
    every_gpu = [torch.device("cuda", i) for i in range(torch.cuda.device_count())]
    on_gpus = search.to_gpus(flat, 4096)  # an exact index goes to torch on every GPU, whatever k
    assert isinstance(on_gpus, torch_flat.TorchFlat) and [b.device for _, b in on_gpus.shards] == every_gpu
    two_shards = torch_flat.TorchFlat(torch_flat.flat_vectors(flat), [torch.device("cuda", 0)] * 2)
    for ours in (on_gpus, two_shards):
        assert (ours.ntotal, ours.d) == (5000, 24) and all(b.device.type == "cuda" for _, b in ours.shards)
        for k in (20, 1500):
            want = rank_rows(*flat.search(q, k), keys)
            got = rank_rows(*ours.search(q, k), keys)
            np.testing.assert_allclose(got[1], want[1], rtol=1e-5, atol=1e-5)  # float32 sums in another order
            differ = got[0] != want[0]  # only where two scores are that close (a last-digit near-tie)
            assert differ.mean() < 1e-3
        assert set(got[0][0, :11].tolist()) == {10, *range(4000, 4010)}
    scores, rows = torch_flat.TorchFlat(x[:3], every_gpu[:1]).search(q[:2], 5)
    assert (rows[:, 3:] == -1).all() and np.isneginf(scores[:, 3:]).all()
    half = torch_flat.TorchFlat(x, every_gpu, fp16=True)
    got_rows, _ = rank_rows(*half.search(q, 100), keys)
    want_rows = rank_rows(*flat.search(q, 100), keys)[0]
    assert np.mean([len(set(a) & set(b)) / 100 for a, b in zip(got_rows, want_rows)]) > 0.95


@pytest.mark.skipif(not torch.cuda.is_available() or not torch.cuda.is_bf16_supported(), reason="needs bf16")
def test_one_bf16_training_step_on_the_gpu(tiny_bert, tmp_path, monkeypatch):
    """The train loop on GPU 0 in bf16 autocast (no loss scaler): a finite loss, the weights move, stay float32 and
    finite, and the saved model loads."""
    from dr_core.train import Trainer, TrainSettings
    from dr_core.train_data import TrainingData

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    d = prepare_tokenized(tiny_bert, tmp_path)
    spec = EncoderSpec(pooling="mean", q_max_len=16, p_max_len=48)
    BiEncoder.from_base(str(tiny_bert), spec).save(d / "init", load_tokenizer(tiny_bert))
    settings = TrainSettings(max_steps=1, batch_size=4, group_size=3, lr=1e-3, log_every=1, precision="bf16")
    negatives = {"q1": ["1007", "1014"], "q3": ["1021"]}
    data = TrainingData(d / "tq.parquet", d / "tc.parquet", pd.read_parquet(d / "qrels.parquet"), negatives)
    trainer = Trainer(d / "init", data, settings, d / "ckpt")
    assert trainer.runtime.device == torch.device("cuda", 0) and trainer.runtime.precision == "bf16"
    assert not trainer.scaler.is_enabled()  # bf16 needs no loss scaling
    before = {k: v.detach().cpu().clone() for k, v in trainer.task.model.state_dict().items()}
    assert next(trainer.task.model.parameters()).device.type == "cuda"
    trainer.train(d / "model", d / "log.csv")

    rows = list(csv.DictReader(open(d / "log.csv")))
    assert [int(r["step"]) for r in rows] == [1]
    assert math.isfinite(float(rows[0]["loss"])) and float(rows[0]["loss"]) > 0
    assert math.isfinite(float(rows[0]["grad_norm"])) and float(rows[0]["grad_norm"]) > 0
    after = BiEncoder.load(d / "model").state_dict()
    weights = {k: v for k, v in after.items() if v.is_floating_point()}
    assert all(v.dtype == before[k].dtype == torch.float32 and torch.isfinite(v).all() for k, v in weights.items())
    assert any(not torch.equal(v, before[k]) for k, v in weights.items())


def test_gpu_encoding_equals_cpu_encoding_within_float_tolerance(tiny_bert, tmp_path, monkeypatch):
    """The same model and passages: fp32 on the GPU equals the CPU's within float32 summation order; the encode
    step's own choice on the GPU (auto: bf16, or fp16) within half-precision rounding, the same ids in order."""
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    d = prepare_tokenized(tiny_bert, tmp_path)
    tok = load_tokenizer(tiny_bert)
    BiEncoder.from_base(str(tiny_bert), EncoderSpec(pooling="mean", p_max_len=48)).save(d / "m", tok)

    encode_corpus_shard(d / "m", d / "tc.parquet", 0, 1, d / "gpu.npy", d / "gpu.ids", EncodeSettings(batch_size=8))
    with monkeypatch.context() as m:
        m.setattr(torch.cuda, "is_available", lambda: False)  # pick_device: the CPU
        encode_corpus_shard(d / "m", d / "tc.parquet", 0, 1, d / "cpu.npy", d / "cpu.ids", EncodeSettings(batch_size=8))
    cpu, gpu = np.load(d / "cpu.npy"), np.load(d / "gpu.npy")
    assert (d / "gpu.ids").read_text() == (d / "cpu.ids").read_text()
    assert gpu.dtype == np.float32 and gpu.shape == cpu.shape == (48, 32)
    cosine = (cpu * gpu).sum(1) / (np.linalg.norm(cpu, axis=1) * np.linalg.norm(gpu, axis=1))
    assert cosine.min() > 0.999, cosine.min()
    np.testing.assert_allclose(gpu, cpu, rtol=0, atol=0.05 * np.abs(cpu).max())

    model = BiEncoder.load(d / "m").eval()
    store = TokenStore(d / "tc.parquet")
    rows = [store.by_row(i) for i in range(len(store))]
    padder = Padder(tok, 48)
    on_cpu = embed(model, padder, rows, False, 8, precision="fp32")
    np.testing.assert_array_equal(on_cpu, cpu)  # what the CPU encode step wrote
    matmul = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")  # true fp32 products (no TF32), whatever the default becomes
    try:
        on_gpu = embed(model.to("cuda"), padder, rows, False, 8, precision="fp32")
    finally:
        torch.set_float32_matmul_precision(matmul)
    np.testing.assert_allclose(on_gpu, on_cpu, rtol=1e-4, atol=1e-5)
