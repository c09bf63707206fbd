"""Training throughput (query groups/s): our Trainer vs sentence-transformers' MultipleNegativesRankingLoss.

Same base model (pkg:cognition/model), same SciFact train queries, positives and 3 hard negatives per query
(group size 4), batch 16, AdamW, fp32 on CPU. sentence-transformers runs its own loss on (anchor, positive,
negative_1..3) columns tokenized per step as its data collator does (the `datasets`-based
SentenceTransformerTrainer is not installed here; the loop below is the work it does per step). Ours reads
pre-tokenized Parquet, as the workflow does. Each side: `--warmup` steps, then `--steps` timed steps.

    python benchmarks/train_throughput.py [--max-lens 256 128] [--steps 24] [--warmup 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dr_core.data.beir import prepare_collection, prepare_qrels
from dr_core.model import BiEncoder, EncoderSpec, load_tokenizer, resolve_model_path
from dr_core.tokenization import TokenizeSettings, format_passages, tokenize_table
from dr_core.train import Trainer, TrainSettings
from dr_core.train_data import TrainingData

BASE = "pkg:cognition/model"
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact"
BATCH, GROUP, TEMPLATE = 16, 4, "Title: {title} Text: {text}"


def prepare(work: Path) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """Parquet corpus/queries/qrels in `work`; qrels of the first positive per query; 3 random negatives each."""
    prepare_collection(DATA, work)
    prepare_qrels(DATA, "train", work / "corpus.parquet", work / "queries.parquet", work / "qrels.parquet")
    qrels = pd.read_parquet(work / "qrels.parquet").drop_duplicates("qid", ignore_index=True)
    docs = pd.read_parquet(work / "corpus.parquet", columns=["id"])["id"].to_numpy()
    rng = np.random.default_rng(0)
    negatives = {q: [str(d) for d in rng.choice(docs, GROUP - 1, replace=False)] for q in qrels["qid"]}
    return qrels, negatives


def prepare_ours(work: Path, max_len: int) -> None:
    """Pre-tokenized corpus and queries, and the base model saved as a bi-encoder, as the workflow makes them."""
    tok = load_tokenizer(BASE)
    tokenize_table(
        work / "corpus.parquet", work / f"tc{max_len}.parquet", tok, "id", TokenizeSettings(max_len, TEMPLATE)
    )
    tokenize_table(work / "queries.parquet", work / "tq.parquet", tok, "qid", TokenizeSettings(max_len))
    spec = EncoderSpec(pooling="mean", similarity="cosine", q_max_len=max_len, p_max_len=max_len)
    BiEncoder.from_base(BASE, spec).save(work / f"init{max_len}", tok)


def ours(
    work: Path, qrels: pd.DataFrame, negatives: dict[str, list[str]], max_len: int, warmup: int, steps: int
) -> float:
    settings = TrainSettings(
        max_steps=warmup + steps,
        batch_size=BATCH,
        group_size=GROUP,
        temperature=0.05,
        checkpoint_every=0,
        log_every=1,
        mask_false_negatives=False,
    )
    data = TrainingData(work / "tq.parquet", work / f"tc{max_len}.parquet", qrels, negatives)
    trainer = Trainer(work / f"init{max_len}", data, settings, work / "ckpt")
    trainer.train(work / f"model{max_len}", work / f"log{max_len}.csv")
    log = pd.read_csv(work / f"log{max_len}.csv")
    elapsed = log.set_index("step")["elapsed_s"]
    return float(steps * BATCH / (elapsed[warmup + steps] - elapsed[warmup]))


def sentence_transformers(
    work: Path, qrels: pd.DataFrame, negatives: dict[str, list[str]], max_len: int, warmup: int, steps: int
) -> float:
    from sentence_transformers import SentenceTransformer, losses, models

    corpus = pd.read_parquet(work / "corpus.parquet").set_index("id")
    text = dict(zip(corpus.index, format_passages(corpus["title"].tolist(), corpus["text"].tolist(), TEMPLATE)))
    queries = pd.read_parquet(work / "queries.parquet").set_index("qid")["text"].to_dict()
    transformer = models.Transformer(resolve_model_path(BASE), max_seq_length=max_len)
    pooling = models.Pooling(transformer.get_word_embedding_dimension(), "mean")
    model = SentenceTransformer(modules=[transformer, pooling], device="cpu")
    loss = losses.MultipleNegativesRankingLoss(model, scale=20.0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5)
    rows = qrels.sample(frac=1.0, random_state=0).to_dict("records")
    model.train()
    t_start = 0.0
    for step in range(warmup + steps):
        if step == warmup:
            t_start = time.perf_counter()
        batch = rows[step * BATCH : (step + 1) * BATCH]
        columns = [[queries[r["qid"]] for r in batch], [text[r["docid"]] for r in batch]]
        columns += [[text[negatives[r["qid"]][j]] for r in batch] for j in range(GROUP - 1)]
        features = [_to_device(model.preprocess(col), model.device) for col in columns]
        value = loss(features, None)
        value.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return steps * BATCH / (time.perf_counter() - t_start)


def _to_device(features: dict, device: torch.device) -> dict:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in features.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-lens", type=int, nargs="+", default=[256, 128])
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs per side; the best is reported")
    a = parser.parse_args()
    if not (DATA / "corpus.jsonl").exists():
        raise SystemExit(f"{DATA} is absent")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        qrels, negatives = prepare(work)
        for max_len in a.max_lens:
            prepare_ours(work, max_len)
            st, dr = [], []
            for _ in range(a.repeats):  # alternate, so that load from other processes hits both sides alike
                st.append(sentence_transformers(work, qrels, negatives, max_len, a.warmup, a.steps))
                dr.append(ours(work, qrels, negatives, max_len, a.warmup, a.steps))
            rounded = [[round(x, 2) for x in runs] for runs in (dr, st)]
            print(f"max length {max_len}: dr_core {rounded[0]}, sentence-transformers {rounded[1]}")
            rows.append((max_len, max(dr), max(st)))
    print(
        f"\nbatch {BATCH} queries x group {GROUP}, {a.steps} timed steps after {a.warmup} warm-up, "
        f"{torch.get_num_threads()} threads, best of {a.repeats} alternating runs"
    )
    print("| max length | dr_core Trainer (groups/s) | sentence-transformers MNRL (groups/s) | ratio |")
    print("|---:|---:|---:|---:|")
    for max_len, dr, st in rows:
        print(f"| {max_len} | {dr:.2f} | {st:.2f} | {dr / st:.2f} |")


if __name__ == "__main__":
    main()
