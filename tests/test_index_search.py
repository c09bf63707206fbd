"""The per-round faiss index and the streaming search: exactness, recall bounds, refusals, ties, the run stream."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dr_core.fusion import fuse
from dr_core.index import IndexSettings, build_index, default_factory, open_index, set_search_params
from dr_core.negatives import mine
from dr_core.runs import iter_run, read_trec, tie_keys, trec_eval_order, write_msmarco_run
from dr_core.search import load_ids, search_batch, search_to_run


def fake_model(path, weights: bytes = b"w0"):
    """A folder that hashes like a saved bi-encoder (the index only hashes its files)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "dr_encoder.json").write_text('{"pooling": "cls"}')
    (path / "model.safetensors").write_bytes(weights)
    return path


def write_shards(d, emb: np.ndarray, ids: list[str], bounds=(0.4, 1.0)):
    """Embeddings and ids split into shards at the given fractions; returns (npy, ids.txt) pairs."""
    pairs, start = [], 0
    for s, frac in enumerate(bounds):
        end = int(len(ids) * frac)
        np.save(d / f"shard{s}.npy", emb[start:end])
        (d / f"shard{s}.ids.txt").write_text("".join(f"{i}\n" for i in ids[start:end]))
        pairs.append((d / f"shard{s}.npy", d / f"shard{s}.ids.txt"))
        start = end
    return pairs


def built(tmp_path, emb, factory, ids=None, **kw):
    ids = ids or [f"d{i}" for i in range(len(emb))]
    pairs = write_shards(tmp_path, emb, ids)
    model = fake_model(tmp_path / "model")
    build_index(pairs, model, tmp_path / "index.faiss", tmp_path / "index.json", IndexSettings(factory, **kw))
    index = open_index(tmp_path / "index.faiss", tmp_path / "index.json", [p for _, p in pairs], model)
    return index, load_ids([p for _, p in pairs]), pairs


def clustered(rng, n: int, nq: int, dim: int, centers: int = 64):
    """Docs around `centers` random centres, queries near random docs: structure an IVF can use."""
    c = rng.normal(size=(centers, dim)).astype(np.float32)
    docs = c[rng.integers(0, centers, n)] + 0.3 * rng.normal(size=(n, dim)).astype(np.float32)
    queries = docs[rng.integers(0, n, nq)] + 0.3 * rng.normal(size=(nq, dim)).astype(np.float32)
    return docs.astype(np.float32), queries.astype(np.float32)


def exact_top(docs, queries, k):
    return np.argsort(-(queries @ docs.T), axis=1, kind="stable")[:, :k]


@pytest.mark.parametrize("factory,nprobe", [("Flat", None), ("IVF16,Flat", 16)])
def test_exact_index_types_return_the_exact_top_k(tmp_path, factory, nprobe):
    rng = np.random.default_rng(0)
    docs, queries = rng.normal(size=(700, 16)).astype(np.float32), rng.normal(size=(30, 16)).astype(np.float32)
    index, ids, _ = built(tmp_path, docs, factory)
    set_search_params(index, 10, nprobe, None)
    rows, scores = search_batch(index, queries, 10, tie_keys(ids))
    assert (rows == exact_top(docs, queries, 10)).all()
    np.testing.assert_allclose(scores, np.sort(queries @ docs.T, axis=1)[:, ::-1][:, :10], atol=1e-5)


@pytest.mark.parametrize("factory,nprobe,ef,bound", [("IVF64,Flat", 8, None, 0.9), ("HNSW16", None, 64, 0.95)])
def test_approximate_indexes_reach_their_recall_bound(tmp_path, factory, nprobe, ef, bound):
    rng = np.random.default_rng(1)
    docs, queries = clustered(rng, 6000, 100, 32)
    index, ids, _ = built(tmp_path, docs, factory, seed=3)
    set_search_params(index, 20, nprobe, ef)
    rows, _ = search_batch(index, queries, 20, tie_keys(ids))
    exact = exact_top(docs, queries, 20)
    recall = np.mean([len(set(r) & set(e)) / 20 for r, e in zip(rows, exact)])
    assert recall >= bound, recall


def test_ivf_training_is_seeded(tmp_path):
    rng = np.random.default_rng(2)
    docs, queries = clustered(rng, 3000, 20, 16)
    results = []
    for seed, sub in [(5, "a"), (5, "b"), (6, "c")]:
        (tmp_path / sub).mkdir()
        index, ids, _ = built(tmp_path / sub, docs, "IVF32,Flat", seed=seed, train_size=1000)
        set_search_params(index, 10, 2, None)
        results.append(search_batch(index, queries, 10, tie_keys(ids))[0])
    assert (results[0] == results[1]).all() and not (results[0] == results[2]).all()


def test_index_of_another_model_or_corpus_is_refused(tmp_path):
    docs = np.random.default_rng(3).normal(size=(50, 8)).astype(np.float32)
    _, _, pairs = built(tmp_path, docs, "Flat")
    other_model = fake_model(tmp_path / "round2", b"w1")
    ids_files = [p for _, p in pairs]
    with pytest.raises(ValueError, match="another model"):
        open_index(tmp_path / "index.faiss", tmp_path / "index.json", ids_files, other_model)
    ids_files[0].write_text(ids_files[0].read_text().replace("d0\n", "x0\n"))
    with pytest.raises(ValueError, match="index.faiss: built from other corpus shards"):
        open_index(tmp_path / "index.faiss", tmp_path / "index.json", ids_files, tmp_path / "model")


def test_bad_index_settings_name_their_key_and_leave_nothing(tmp_path):
    docs = np.random.default_rng(4).normal(size=(400, 8)).astype(np.float32)
    pairs = write_shards(tmp_path, docs, [f"d{i}" for i in range(400)])
    with pytest.raises(ValueError, match="index.factory 'IVFfoo'"):
        build_index(
            pairs, fake_model(tmp_path / "m"), tmp_path / "x.faiss", tmp_path / "x.json", IndexSettings("IVFfoo")
        )
    assert not list(tmp_path.glob("x*")) and not list(tmp_path.glob(".x*"))
    index, _, _ = built(tmp_path, docs, "IVF8,Flat")
    with pytest.raises(ValueError, match=r"index.nprobe 9 must be in \[1, nlist = 8\]"):
        set_search_params(index, 10, 9, None)
    with pytest.raises(ValueError, match="index.ef_search is set"):
        set_search_params(index, 10, None, 32)
    with pytest.raises(ValueError, match="2 ids for 3 embeddings"):
        (tmp_path / "bad").mkdir()
        np.save(tmp_path / "bad" / "e.npy", np.zeros((3, 4), np.float32))
        (tmp_path / "bad" / "i.txt").write_text("a\nb\n")
        pair = [(tmp_path / "bad" / "e.npy", tmp_path / "bad" / "i.txt")]
        build_index(
            pair, tmp_path / "m", tmp_path / "bad" / "y.faiss", tmp_path / "bad" / "y.json", IndexSettings("Flat")
        )
    assert sorted(p.name for p in (tmp_path / "bad").iterdir()) == ["e.npy", "i.txt"]


def test_auto_factory_follows_size_and_memory():
    assert default_factory(5183, 128, 16) == "Flat"
    assert default_factory(8_841_823, 768, 16) == "IVF16384,PQ96"
    assert default_factory(8_841_823, 768, 64) == "IVF16384,Flat"
    assert default_factory(1_000_000, 384, 0.5) == "IVF4096,PQ48"


def test_ties_are_ranked_by_doc_id_descending_in_every_path(tmp_path):
    """Equal scores: the dense search, trec_eval's order, the fusion step and the MS MARCO writer agree."""
    ids = ["d3", "d10", "d2", "a", "d1"]
    docs = np.array([[1, 0], [1, 0], [0.5, 0], [1, 0], [0.5, 0]], np.float32)
    index, loaded, _ = built(tmp_path, docs, "Flat", ids=ids)
    search_to_run(index, [(["q1"], np.array([[1, 0]], np.float32))], loaded, 5, tmp_path / "run.trec", "t")
    dense = read_trec(tmp_path / "run.trec")
    order = dense["docid"].tolist()
    assert order == ["d3", "d10", "a", "d2", "d1"]
    assert [d for d, _ in trec_eval_order(list(zip(dense["docid"], dense["score"])))] == order
    bm25 = dense.assign(score=0.0)
    assert fuse(bm25, dense, "convex", 5, weight=1.0)["docid"].tolist() == order
    write_msmarco_run({"q1": list(zip(dense["docid"], dense["score"]))}, tmp_path / "run.tsv")
    assert [line.split("\t")[1] for line in (tmp_path / "run.tsv").read_text().splitlines()] == order


def test_fp16_shards_build_the_same_flat_ranking(tmp_path):
    rng = np.random.default_rng(5)
    docs, queries = rng.normal(size=(300, 16)).astype(np.float32), rng.normal(size=(10, 16)).astype(np.float32)
    (tmp_path / "h").mkdir()
    index, ids, _ = built(tmp_path / "h", docs.astype(np.float16), "Flat")
    rows, _ = search_batch(index, queries, 5, tie_keys(ids))
    assert (rows == exact_top(docs.astype(np.float16).astype(np.float32), queries, 5)).all()


def test_streamed_mining_equals_the_in_memory_one(tmp_path):
    rng = np.random.default_rng(6)
    run = pd.DataFrame(
        [(f"q{q}", f"d{rng.integers(0, 99)}x{r}", r, 10.0 - r) for q in range(20) for r in range(1, 31)],
        columns=["qid", "docid", "rank", "score"],
    )
    path = tmp_path / "run.trec"
    path.write_text("".join(f"{q} Q0 {d} {r} {s:.6f} t\n" for q, d, r, s in run.itertuples(index=False)))
    qrels = pd.DataFrame({"qid": [f"q{q}" for q in range(0, 20, 2)], "docid": "d1x3", "rel": 1})
    assert mine(iter_run(path), qrels, 3, 25, 5, 9) == mine(read_trec(path), qrels, 3, 25, 5, 9)
    path.write_text("q1 Q0 a 1 1.0 t\nq2 Q0 b 1 1.0 t\nq1 Q0 c 2 0.5 t\n")
    with pytest.raises(Exception, match="run.trec:3.*appears again"):
        list(iter_run(path))


def test_streamed_retrieve_equals_one_batch(tiny_bert, tmp_path):
    """The retrieve step on the fixture: 2 queries at a time writes the same run as all queries at once."""
    from conftest import prepare_tokenized

    from dr_core.encode import EncodeSettings, encode_corpus_shard
    from dr_core.model import BiEncoder, EncoderSpec, load_tokenizer
    from dr_core.search import IndexFiles, SearchSettings, retrieve

    d = prepare_tokenized(tiny_bert, tmp_path)
    BiEncoder.from_base(str(tiny_bert), EncoderSpec(p_max_len=48)).save(d / "m", load_tokenizer(tiny_bert))
    pairs = [(d / f"e{s}.npy", d / f"e{s}.ids") for s in range(2)]
    for s, (emb, ids) in enumerate(pairs):
        encode_corpus_shard(d / "m", d / "tc.parquet", s, 2, emb, ids, EncodeSettings(batch_size=8))
    build_index(pairs, d / "m", d / "index.faiss", d / "index.json", IndexSettings("Flat"))
    files = IndexFiles(d / "index.faiss", d / "index.json", [i for _, i in pairs])
    args = (d / "m", d / "tq.parquet", d / "qrels.parquet", files)
    assert retrieve(*args, d / "streamed.trec", "t", SearchSettings(k=7, query_batch=2, batch_size=2)) > 2
    retrieve(*args, d / "whole.trec", "t", SearchSettings(k=7, query_batch=10_000))
    assert (d / "streamed.trec").read_text() == (d / "whole.trec").read_text()


def test_nprobe_above_an_explicit_nlist_is_refused_before_building(tmp_path):
    import subprocess

    import yaml
    from conftest import FIXTURES, snakemake_cmd

    config = yaml.safe_load((FIXTURES / "workflow_config.yaml").read_text())
    config["index"] = {"factory": "IVF64,Flat", "nprobe": 100}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    cmd = snakemake_cmd("-n", "--configfile", str(tmp_path / "c.yaml"), "--directory", str(tmp_path))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0
    assert "index.nprobe (100) exceeds the 64 lists of index.factory 'IVF64,Flat'" in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()


def test_gpu_placement_falls_back_to_the_cpu(monkeypatch, tmp_path):
    """No GPU, k above faiss-gpu's limit, or an index type faiss-gpu lacks: the CPU index comes back unchanged;
    with GPUs, every one gets a shard (fp16 storage on request)."""
    import faiss

    from dr_core import search

    index, _, _ = built(tmp_path, np.eye(4, dtype=np.float32), "Flat")
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 0, raising=False)
    assert search.to_gpus(index, 10) is index
    calls = []

    def cloner(ix, co, ngpu):
        calls.append((co.shard, co.useFloat16, ngpu))
        raise RuntimeError("Error: HNSW has no GPU version")

    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 2, raising=False)
    monkeypatch.setattr(faiss, "GpuMultipleClonerOptions", type("Options", (), {}), raising=False)
    monkeypatch.setattr(faiss, "index_cpu_to_all_gpus", cloner, raising=False)
    assert search.to_gpus(index, 4096) is index and not calls
    assert search.to_gpus(index, 10, fp16=True) is index and calls == [(True, True, 2)]
    import torch  # with CUDA, an exact index goes to torch on every device, whatever k; other types to faiss-gpu

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(search, "TorchFlat", lambda v, devices, fp16: (v.shape, [str(d) for d in devices], fp16))
    assert search.to_gpus(index, 4096, fp16=True) == ((4, 4), ["cuda:0", "cuda:1"], True)

    def no_room(*args):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(search, "TorchFlat", no_room)
    with pytest.raises(RuntimeError, match=r"exact index \(4 x 4, 0.0 GiB fp32\) does not fit .* index.gpu_fp16"):
        search.to_gpus(index, 10)
    ivf = faiss.index_factory(4, "IVF1,Flat", faiss.METRIC_INNER_PRODUCT)
    assert search.to_gpus(ivf, 10) is ivf and calls[-1] == (True, False, 2)


def test_torch_flat_returns_faiss_exact_top_k_over_shards_and_slices(monkeypatch, tmp_path):
    """The torch exact index (the GPU path of `Flat`) on CPU devices: two shards, score slices of 1,024 rows,
    k above a slice and above the vectors; the same ranked rows as faiss's IndexFlatIP (ties inside the top k
    by doc id; which of a tie that straddles the k-th place is kept is arbitrary in both), fp16 storage close."""
    import faiss
    import torch

    from dr_core import torch_flat
    from dr_core.search import rank_rows

    rng = np.random.default_rng(0)
    x = rng.normal(size=(5000, 24)).astype(np.float32)
    x[4000:4010] = x[10]  # ties across the two shards and slices
    q = rng.normal(size=(40, 24)).astype(np.float32)
    q[0] = x[10]
    flat = faiss.IndexFlatIP(24)
    flat.add(x)
    keys = tie_keys(np.array([f"d{i}" for i in range(len(x))]))
    monkeypatch.setattr(torch_flat, "SCORE_BUDGET", 40 * 1024)  # 1,024 rows a product
    ours = torch_flat.TorchFlat(torch_flat.flat_vectors(flat), [torch.device("cpu")] * 2)
    assert (ours.ntotal, ours.d) == (5000, 24) and [lo for lo, _ in ours.shards] == [0, 2500]
    for k in (20, 1500):
        want = rank_rows(*flat.search(q, k), keys)
        got = rank_rows(*ours.search(q, k), keys)
        np.testing.assert_allclose(got[1], want[1], rtol=1e-6)  # float32 sums in another order
        differ = got[0] != want[0]  # only where two scores are that close (a last-digit near-tie)
        assert differ.mean() < 1e-3 and (k > 20 or not differ.any())
    assert set(got[0][0, :11].tolist()) == {10, *range(4000, 4010)}
    scores, rows = torch_flat.TorchFlat(x[:3], [torch.device("cpu")]).search(q[:2], 5)
    assert (rows[:, 3:] == -1).all() and np.isneginf(scores[:, 3:]).all()
    half = torch_flat.TorchFlat(x, [torch.device("cpu")], fp16=True)
    got_rows, _ = rank_rows(*half.search(q, 100), keys)
    want_rows = rank_rows(*flat.search(q, 100), keys)[0]
    assert np.mean([len(set(a) & set(b)) / 100 for a, b in zip(got_rows, want_rows)]) > 0.95
    with pytest.raises(ValueError, match="at least one device"):
        torch_flat.TorchFlat(x, [])
    faiss.write_index(flat, str(tmp_path / "flat.faiss"))  # retrieve opens the index memory-mapped
    mapped = faiss.read_index(str(tmp_path / "flat.faiss"), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
    np.testing.assert_array_equal(torch_flat.flat_vectors(mapped), x)
