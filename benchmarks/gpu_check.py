"""The CUDA paths the CPU machines cannot run, each through dr_core's own code, on a lent GPU.

One JSON line per check on stdout and in --out (a failing check records its error; the next one still runs):
  env      torch, CUDA, the device, faiss and the GPUs faiss sees
  search   `to_gpus`: Flat (torch on the GPUs) against faiss's exact CPU search on the same queries (our ranking
           with its tie keys on both), fp16 storage, q/s of each; with --faiss-gpu-ivf an IVF through faiss-gpu
  search_msmarco
           Flat at MS MARCO's corpus shape (8,841,823 x 768) through `to_gpus` (fp16 and fp32 storage): copy time,
           q/s at depth 200 through `search_batch`, and the 502,939 train queries extrapolated from it
  train    our Trainer on a BERT-base-shaped random model, batch 32 x group 8, passages 128 / queries 32 tokens:
           fp32, fp16 (GradScaler), bf16, and bf16 with GradCache: losses finite and falling, groups/s, peak memory
  encode   `encode_corpus_shard` at fp32 / fp16 / bf16: passages/s and the largest cosine gap to fp32's embeddings
  t5       the T5 `first_decoder` bi-encoder (OpenMatch's pooling) from OpenMatch-scaled weights: fp16 and bf16 steps
  nccl     a one-process NCCL group, DDP around the bi-encoder, one bf16 step, an all_reduce
  st       side by side with sentence-transformers on the train and encode shapes, in bf16 (fp32 on a CPU): our
           Trainer against its MultipleNegativesRankingLoss on the same groups and model, our `embed` (tokenized
           ahead, as the workflow does; also with the tokenizing counted) against its `encode` of the same texts;
           each as groups or passages/s, our ratio, and training as a share of the card's dense bf16 peak
           (PEAK_BF16 by device name; none if unknown)

The models are random (no hub here): right for speed and numerics, not for quality. `--small` shrinks every
shape so the script runs on a CPU in a minute (half precision is then refused, which is recorded).

    python benchmarks/gpu_check.py --out gpu_check.jsonl [--small] [--only search,train]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dr_core.data.beir import prepare_collection, prepare_qrels
from dr_core.encode import EncodeSettings, encode_corpus_shard
from dr_core.model import BiEncoder, EncoderSpec, load_tokenizer
from dr_core.tokenization import TokenizeSettings, tokenize_table
from dr_core.train import Trainer, TrainSettings
from dr_core.train_data import TrainingData

MSMARCO_DOCS, MSMARCO_TRAIN_QUERIES = 8_841_823, 502_939
GROUP, BATCH = 8, 32
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # dense bf16 FLOP/s from NVIDIA's data sheets


def words(rng: np.random.Generator, n: int) -> list[str]:
    return [f"w{i}" for i in rng.integers(0, 3000, n)]


def write_collection(d: Path, docs: int, queries: int) -> Path:
    """A BEIR folder of random-word passages (~100 words) and queries made of words from their one positive."""
    rng = np.random.default_rng(0)
    src = d / "beir"
    (src / "qrels").mkdir(parents=True)
    texts = [words(rng, 100) for _ in range(docs)]
    with open(src / "corpus.jsonl", "w") as f:
        for i, t in enumerate(texts):
            f.write(json.dumps({"_id": f"d{i}", "title": " ".join(t[:5]), "text": " ".join(t[5:])}) + "\n")
    positives = rng.choice(docs, queries, replace=False)
    with open(src / "queries.jsonl", "w") as f, open(src / "qrels" / "train.tsv", "w") as q:
        q.write("query-id\tcorpus-id\tscore\n")
        for i, p in enumerate(positives):
            f.write(json.dumps({"_id": f"q{i}", "text": " ".join(rng.choice(texts[p], 12))}) + "\n")
            q.write(f"q{i}\td{p}\t1\n")
    return src


def bert_dir(d: Path, small: bool) -> Path:
    """A random BERT (BERT-base's shape, or a tiny one with --small) with a WordPiece tokenizer of the words."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    vocab = [f"w{i}" for i in range(3000)]
    tok.train_from_iterator([" ".join(vocab)], trainers.WordPieceTrainer(vocab_size=4000, special_tokens=special))
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
    )
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]")  # fmt: skip
    path = d / "bert"
    fast.save_pretrained(path)
    torch.manual_seed(0)
    shape = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128) if small else {}
    BertModel(BertConfig(vocab_size=tok.get_vocab_size(), **shape)).save_pretrained(path)
    return path


def prepare(d: Path, small: bool) -> dict:
    """Collection, tokens (passages 128, queries 32), the random base saved as a mean-pooled bi-encoder."""
    src = write_collection(d, 2_000 if small else 20_000, 256 if small else 4_096)
    prepare_collection(src, d)
    prepare_qrels(src, "train", d / "corpus.parquet", d / "queries.parquet", d / "qrels.parquet")
    base = bert_dir(d, small)
    tok = load_tokenizer(base)
    tokenize_table(d / "corpus.parquet", d / "tc.parquet", tok, "id", TokenizeSettings(128, "{title} {text}"))
    tokenize_table(d / "queries.parquet", d / "tq.parquet", tok, "qid", TokenizeSettings(32))
    spec = EncoderSpec(pooling="mean", similarity="cosine", q_max_len=32, p_max_len=128)
    BiEncoder.from_base(str(base), spec).save(d / "init", tok)
    qrels = pd.read_parquet(d / "qrels.parquet")
    docs = pd.read_parquet(d / "corpus.parquet", columns=["id"])["id"].to_numpy()
    rng = np.random.default_rng(1)
    negatives = {q: [str(x) for x in rng.choice(docs, GROUP - 1, replace=False)] for q in qrels["qid"]}
    return {"qrels": qrels, "negatives": negatives}


def peak_gb() -> float:
    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else 0.0


def check_env(a, d, data) -> dict:
    import faiss

    out = {"torch": torch.__version__, "cuda": torch.version.cuda, "faiss": faiss.__version__,
           "faiss_gpus": faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0}  # fmt: skip
    if torch.cuda.is_available():
        out |= {"device": torch.cuda.get_device_name(), "bf16": torch.cuda.is_bf16_supported()}
    return out


def unit_rows(n: int, dim: int, seed: int) -> np.ndarray:
    """Random unit vectors made on the GPU when there is one (fast), returned as float32 numpy."""
    g = torch.Generator(device="cuda" if torch.cuda.is_available() else "cpu").manual_seed(seed)
    x = torch.randn(n, dim, generator=g, device=g.device)
    return torch.nn.functional.normalize(x, dim=1).cpu().numpy()


def flat_index(n: int, dim: int, chunk: int = 1_000_000):
    import faiss

    index = faiss.IndexFlatIP(dim)
    for start in range(0, n, chunk):
        index.add(unit_rows(min(chunk, n - start), dim, seed=start + 1))
    return index


def qps(index, queries: np.ndarray, k: int, keys: np.ndarray, batch: int = 8192) -> tuple[float, np.ndarray]:
    from dr_core.search import search_batch

    t0, rows = time.perf_counter(), []
    for start in range(0, len(queries), batch):
        rows.append(search_batch(index, queries[start : start + batch], k, keys)[0])
    return len(queries) / (time.perf_counter() - t0), np.concatenate(rows)


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    return round(float(np.mean([len(set(x) & set(y)) / len(x) for x, y in zip(a, b)])), 4)


def check_search(a, d, data) -> dict:
    # faiss is imported here, not at the top: the training checks still run where it fails to load
    from dr_core.index import make_index, set_search_params
    from dr_core.search import tie_keys, to_gpus
    from dr_core.torch_flat import flat_vectors

    n, dim, k = (50_000, 64, 100) if a.small else (1_000_000, 768, 200)
    cpu = flat_index(n, dim)
    keys = tie_keys(np.array([str(i) for i in range(n)]))
    queries = unit_rows(2_000, dim, seed=0)
    cpu_qps, exact = qps(cpu, queries, k, keys)
    out = {"n": n, "dim": dim, "k": k, "cpu_flat_qps": round(cpu_qps, 1)}
    for fp16 in (False, True):
        gpu = to_gpus(cpu, k, fp16)
        out[f"on_gpu_fp16{int(fp16)}"] = gpu is not cpu
        rate, rows = qps(gpu, queries, k, keys)
        out[f"gpu_fp16{int(fp16)}_qps"] = round(rate, 1)
        out[f"gpu_fp16{int(fp16)}_overlap@k"] = overlap(rows, exact)
        out[f"gpu_fp16{int(fp16)}_same_order"] = round(float(np.mean(np.all(rows == exact, axis=1))), 4)
        del gpu
    if not a.faiss_gpu_ivf:  # PyPI's faiss-gpu-cu12 has no Hopper kernels: its search aborts the process there
        return out
    ivf = make_index("IVF256,Flat" if a.small else "IVF1024,Flat", dim)
    ivf.train(unit_rows(64 * ivf.nlist, dim, seed=7))
    ivf.add(flat_vectors(cpu).copy())
    set_search_params(ivf, k, ivf.nlist // 8, None)
    cpu_rate, cpu_rows = qps(ivf, queries, k, keys)
    gpu = to_gpus(ivf, k)
    rate, rows = qps(gpu, queries, k, keys)
    out |= {"ivf_nprobe": ivf.nprobe, "ivf_cpu_qps": round(cpu_rate, 1), "ivf_gpu_qps": round(rate, 1),
            "ivf_gpu_vs_cpu_overlap@k": overlap(rows, cpu_rows), "ivf_gpu_recall@k": overlap(rows, exact)}  # fmt: skip
    return out


def check_search_msmarco(a, d, data) -> dict:
    from dr_core.search import tie_keys, to_gpus

    n, dim, nq, k = (200_000, 64, 2_000, 200) if a.small else (MSMARCO_DOCS, 768, 20_000, 200)
    t0 = time.perf_counter()
    cpu = flat_index(n, dim)
    out = {"n": n, "dim": dim, "queries": nq, "k": k, "make_s": round(time.perf_counter() - t0, 1)}
    keys = tie_keys(np.array([str(i) for i in range(n)]))
    queries = unit_rows(nq, dim, seed=0)
    for fp16 in (True, False):
        t0 = time.perf_counter()
        gpu = to_gpus(cpu, k, fp16)
        out[f"fp16{int(fp16)}_to_gpu_s"] = round(time.perf_counter() - t0, 1)
        qps(gpu, queries[:256], k, keys)  # warm-up
        rate, _ = qps(gpu, queries, k, keys)
        out[f"fp16{int(fp16)}_qps"] = round(rate, 1)
        out[f"fp16{int(fp16)}_train_queries_min"] = round(MSMARCO_TRAIN_QUERIES / rate / 60, 2)
        if torch.cuda.is_available():
            free, total = torch.cuda.mem_get_info()
            out[f"fp16{int(fp16)}_gpu_used_gb"] = round((total - free) / 2**30, 1)
        del gpu
    return out


def train_once(d: Path, data: dict, name: str, steps: int, init: str = "init", **settings) -> dict:
    defaults = dict(batch_size=BATCH, group_size=GROUP, lr=5e-5, temperature=0.05, warmup_ratio=0.1, log_every=1,
                    checkpoint_every=0, weight_decay=0.0)  # fmt: skip
    s = TrainSettings(max_steps=steps, **(defaults | settings))
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    groups = TrainingData(d / "tq.parquet", d / "tc.parquet", data["qrels"], data["negatives"])
    trainer = Trainer(d / init, groups, s, d / f"ckpt_{name}")
    trainer.train(d / f"model_{name}", d / f"log_{name}.csv")
    log = pd.read_csv(d / f"log_{name}.csv").set_index("step")
    t = log["elapsed_s"]
    warm = min(5, steps - 1)
    scaler = trainer.scaler
    return {
        "first_loss": round(float(log["loss"].iloc[0]), 4),
        "last5_loss": round(float(log["loss"].iloc[-5:].mean()), 4),
        "finite": bool(np.isfinite(log["loss"]).all()),
        "groups_per_s": round((steps - warm) * BATCH / (t[steps] - t[warm]), 1),
        "peak_gpu_gb": peak_gb(),
        "scale": float(scaler.get_scale()) if scaler.is_enabled() else None,
    }


def check_train(a, d, data) -> dict:
    steps = 12 if a.small else 40
    runs = [("fp32", {"precision": "fp32"}), ("fp16", {"precision": "fp16"}), ("bf16", {"precision": "bf16"}),
            ("bf16_gradcache", {"precision": "bf16", "grad_cache_chunk": 8})]  # fmt: skip
    out = {}
    for name, settings in runs:
        try:
            out[name] = train_once(d, data, name, steps, **settings)
        except Exception as e:  # noqa: BLE001 (recorded: fp16/bf16 are refused on a CPU)
            out[name] = {"error": f"{type(e).__name__}: {e}"}
    return out


def check_encode(a, d, data) -> dict:
    out, ref = {}, None
    for precision in ("fp32", "fp16", "bf16"):
        emb, ids = d / f"emb_{precision}.npy", d / f"ids_{precision}.txt"
        t0 = time.perf_counter()
        try:
            encode_corpus_shard(d / "init", d / "tc.parquet", 0, 1, emb, ids, EncodeSettings(batch_size=256), precision)
        except Exception as e:  # noqa: BLE001
            out[precision] = {"error": f"{type(e).__name__}: {e}"}
            continue
        x = np.load(emb)
        rate = len(x) / (time.perf_counter() - t0)
        ref = x if ref is None else ref
        cos = np.sum(x * ref, 1) / np.linalg.norm(x, axis=1) / np.linalg.norm(ref, axis=1)
        out[precision] = {"passages_per_s": round(rate, 1), "min_cos_to_fp32": round(float(cos.min()), 5),
                          "msmarco_corpus_h": round(MSMARCO_DOCS / rate / 3600, 2)}  # fmt: skip
    return out


def check_t5(a, d, data) -> dict:
    from transformers import T5Config, T5ForConditionalGeneration

    from dr_core.t5 import scale_t5_model

    config = T5Config(vocab_size=4000, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4,
                      decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)  # fmt: skip
    if not a.small:
        config = T5Config(vocab_size=4000, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)  # t5-base shape
    torch.manual_seed(0)
    T5ForConditionalGeneration(config).save_pretrained(d / "t5")
    load_tokenizer(d / "bert").save_pretrained(d / "t5")
    scale_t5_model(str(d / "t5"), d / "t5_scaled")
    spec = EncoderSpec(pooling="first_decoder", similarity="dot", q_max_len=32, p_max_len=128)
    BiEncoder.from_base(str(d / "t5_scaled"), spec).save(d / "init_t5", load_tokenizer(d / "t5_scaled"))
    out, steps = {}, 6 if a.small else 20
    for precision in ("fp16", "bf16") if torch.cuda.is_available() else ("fp32",):
        try:
            settings = {"precision": precision, "temperature": 1.0}  # OpenMatch's, on dot products
            out[precision] = train_once(d, data, f"t5_{precision}", steps, "init_t5", **settings)
        except Exception as e:  # noqa: BLE001 (recorded: fp16/bf16 are refused on a CPU)
            out[precision] = {"error": f"{type(e).__name__}: {e}"}
    return out


def check_nccl(a, d, data) -> dict:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from dr_core.device import autocast, pick_device

    device = pick_device()
    backend = "nccl" if device.type == "cuda" else "gloo"
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29533")
    dist.init_process_group(backend, rank=0, world_size=1)
    try:
        model = BiEncoder.load(d / "init").to(device)
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        batch = {"input_ids": torch.randint(5, 3000, (8, 32), device=device)}
        batch["attention_mask"] = torch.ones_like(batch["input_ids"])
        with autocast("bf16" if device.type == "cuda" else "fp32", device):
            q, p = net(batch, batch)
            loss = torch.nn.functional.cross_entropy((q @ p.T).float() / 0.05, torch.arange(8, device=device))
        loss.backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        total = torch.tensor([1.0], device=device)
        dist.all_reduce(total)
        return {
            "backend": backend,
            "loss": round(float(loss.detach()), 4),
            "params_with_grad": len(grads),
            "grads_finite": bool(all(torch.isfinite(g).all() for g in grads)),
            "all_reduce": float(total),
        }
    finally:
        dist.destroy_process_group()


def st_train(d: Path, data: dict, steps: int, precision: str) -> float:
    """sentence-transformers' MNRL on our training groups (query, positive, GROUP-1 negatives), groups/s: the loop
    of benchmarks/train_throughput.py at this check's shapes, queries at 32 tokens and passages at 128 as ours."""
    from train_throughput import sentence_transformers  # beside this script

    warm = min(5, steps - 1)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    qrels, negatives = data["qrels"].drop_duplicates("qid"), data["negatives"]
    return sentence_transformers(
        d, qrels, negatives, str(d / "bert"), (32, 128), warm, steps - warm, (BATCH, GROUP), device, precision == "bf16"
    )


def step_flops(d: Path, data: dict) -> float:
    """FLOPs of one of our training steps (forward and backward) at the check's shapes, on the CPU."""
    from torch.utils.flop_counter import FlopCounterMode

    from dr_core.batching import Padder
    from dr_core.tokenization import TokenStore

    model, tok = BiEncoder.load(d / "init"), load_tokenizer(d / "init")
    qs, ps = TokenStore(d / "tq.parquet"), TokenStore(d / "tc.parquet")
    rows = data["qrels"].drop_duplicates("qid").head(BATCH)
    q = Padder(tok, 32)([qs[x] for x in rows["qid"]])
    p = Padder(tok, 128)([ps[x] for r in rows.itertuples() for x in [r.docid, *data["negatives"][r.qid]]])
    with FlopCounterMode(display=False) as counter:
        qe, pe = model(q, p)
        (qe @ pe.T).logsumexp(1).sum().backward()
    return counter.get_total_flops()


def check_st(a, d, data) -> dict:
    from sentence_transformers import SentenceTransformer

    from dr_core.batching import Padder
    from dr_core.encode import embed
    from dr_core.tokenization import TokenStore

    cuda = torch.cuda.is_available()
    precision, steps = ("bf16" if cuda else "fp32"), (12 if a.small else 40)
    peak = next((v for k, v in PEAK_BF16.items() if cuda and k in torch.cuda.get_device_name()), None)
    flops = step_flops(d, data)
    ours = train_once(d, data, f"st_side_{precision}", steps, precision=precision)["groups_per_s"]
    theirs = st_train(d, data, steps, precision)
    rates = {"dr_core": ours, "st": round(theirs, 1)}
    out = {"precision": precision, "peak_flops": peak, "step_gflop": round(flops / 1e9, 1),
           "train_groups_per_s": {**rates, "ratio": round(ours / theirs, 2)}}  # fmt: skip
    if peak:
        out["train_share_of_peak"] = {k: round(v * flops / BATCH / peak, 3) for k, v in rates.items()}
    corpus = pd.read_parquet(d / "corpus.parquet")
    texts = [f"{t} {x}" for t, x in zip(corpus["title"], corpus["text"])]
    device = "cuda" if cuda else "cpu"
    model = BiEncoder.load(d / "init").to(device)
    t0 = time.perf_counter()
    settings = TokenizeSettings(128, "{title} {text}")
    tokenize_table(d / "corpus.parquet", d / "tc_again.parquet", load_tokenizer(d / "init"), "id", settings)
    tokenize_s = time.perf_counter() - t0
    store = TokenStore(d / "tc_again.parquet")
    rows = [store.by_row(i) for i in range(len(store))]
    t0 = time.perf_counter()
    mine = embed(model, Padder(load_tokenizer(d / "init"), 128), rows, False, 256, precision)
    embed_s = time.perf_counter() - t0
    ours_rate, with_tokenize = len(rows) / embed_s, len(rows) / (embed_s + tokenize_s)
    st = SentenceTransformer(str(d / "init"), device=device)  # the same weights, through its own files
    st.max_seq_length = 128
    if cuda:
        st = st.to(torch.bfloat16)
    t0 = time.perf_counter()
    other = st.encode(texts, batch_size=256, convert_to_numpy=True, normalize_embeddings=True)
    st_rate = len(texts) / (time.perf_counter() - t0)
    out["encode_passages_per_s"] = {"dr_core": round(ours_rate, 1), "st": round(st_rate, 1),
                                    "ratio": round(ours_rate / st_rate, 2),
                                    "dr_core_tokenize_counted": round(with_tokenize, 1),
                                    "ratio_tokenize_counted": round(with_tokenize / st_rate, 2), "rows": len(rows),
                                    "dims": [mine.shape[1], other.shape[1]]}  # fmt: skip
    return out


CHECKS = {"env": check_env, "search": check_search, "search_msmarco": check_search_msmarco, "train": check_train,
          "encode": check_encode, "t5": check_t5, "nccl": check_nccl, "st": check_st}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="gpu_check.jsonl")
    p.add_argument("--small", action="store_true", help="tiny shapes, for a dry run on a CPU")
    p.add_argument("--faiss-gpu-ivf", action="store_true", help="also an IVF index through faiss-gpu")
    p.add_argument("--only", default=",".join(CHECKS), help="comma-separated checks, in this order")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp, open(a.out, "a") as f:
        d, data = Path(tmp), None
        for name in a.only.split(","):
            t0 = time.perf_counter()
            try:
                if data is None and name in ("train", "encode", "t5", "nccl", "st"):
                    data = prepare(d, a.small)
                result = {"check": name, **CHECKS[name](a, d, data)}
            except Exception as e:  # noqa: BLE001 (recorded; the next check still runs)
                result = {"check": name, "error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-1500:]}
            result["wall_s"] = round(time.perf_counter() - t0, 1)
            line = json.dumps(result)
            print(line, flush=True)
            f.write(line + "\n")
            f.flush()


if __name__ == "__main__":
    main()
