"""Benchmark the MS MARCO data steps against the seed's shell commands on synthetic data at MS MARCO scale.

    nice -n 10 python benchmarks/msmarco_data.py [--scale 1.0] [--workdir /tmp/msmarco_bench]

Writes para.txt (8.8M passages, ~10% without a title), para.title.txt and ~400M CRLF triples for 500k queries
(all times `--scale`) under `--workdir`, then times each step and its peak RSS (the sum over the process tree,
sampled every 0.1 s) for our Python and for the seed's pipeline, checks the outputs are byte-identical, and
prints a Markdown table. Needs psutil (benchmark only).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil

PASSAGES, QUERIES, TRIPLES_PER_QUERY = 8_841_823, 500_000, 800
SEED_JOIN = (
    "join -t \"$(echo -en '\\t')\" -e '' -a 1 -o 1.1 2.2 1.2 <(sort -k1,1 para.txt) <(sort -k1,1 para.title.txt)"
    " | sort -k1,1 -n > corpus.seed.tsv"
)
SEED_AWK = (
    'awk -v RS=\'\\r\\n\' \'$1==last {printf ",%s",$3; next} NR>1 {print "";} '
    '{last=$1; printf "%s\\t%s",$1,$3;} END{print "";}\' triples.tsv > negatives.seed.tsv'
)
OURS_JOIN = (
    "from dr_core.data.msmarco.title_join import join_titles; "
    "join_titles('para.txt', 'para.title.txt', 'corpus.ours.tsv')"
)
OURS_NEG = (
    "from dr_core.data.msmarco.triples import negatives_from_triples; "
    "negatives_from_triples('triples.tsv', 'negatives.ours.tsv')"
)


def _digits(values: np.ndarray, width: int) -> np.ndarray:
    """Right-aligned ASCII digits of non-negative ints as an (n, width) uint8 matrix, 0 where no digit."""
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    out = (values[:, None] // powers % 10 + 48).astype(np.uint8)
    out[(values[:, None] < powers) & (powers > 1)] = 0
    return out


def _word_pool(rng: np.random.Generator, size: int) -> bytes:
    """`size` bytes of space-separated pseudo-words (no tab, no newline)."""
    vocab = [bytes(rng.integers(97, 123, rng.integers(2, 10)).astype(np.uint8)) for _ in range(20_000)]
    words = rng.choice(len(vocab), size // 5)
    return b" ".join(vocab[i] for i in words)[:size]


def write_collection(workdir: Path, passages: int, rng: np.random.Generator) -> None:
    """para.txt (pid, ~330-byte text) and para.title.txt (pid, title) for 90% of pids, both in pid order."""
    pool = _word_pool(rng, 64 << 20)
    step = 200_000
    with open(workdir / "para.txt", "wb") as para, open(workdir / "para.title.txt", "wb") as titles:
        for lo in range(0, passages, step):
            pids = range(lo, min(lo + step, passages))
            starts = rng.integers(0, len(pool) - 1000, len(pids))
            lengths = rng.integers(120, 540, len(pids))
            para.write(b"".join(b"%d\t%s\n" % (p, pool[s : s + n].strip()) for p, s, n in zip(pids, starts, lengths)))
            has_title = rng.random(len(pids)) >= 0.10
            tlens = rng.integers(8, 60, len(pids))
            titles.write(
                b"".join(
                    b"%d\t%s\n" % (p, pool[s : s + n].strip())
                    for p, s, n, keep in zip(pids, starts, tlens, has_title)
                    if keep
                )
            )


def write_triples(workdir: Path, queries: int, per_query: int, passages: int, rng: np.random.Generator) -> None:
    """`qid<TAB>pos<TAB>neg` CRLF rows, ~`per_query` per query, grouped by query in a shuffled query order."""
    qids = rng.choice(1_200_000, queries, replace=False)
    counts = rng.integers(per_query // 2, per_query * 3 // 2 + 1, queries)
    sep = np.full((len(qids), 1), 9, np.uint8)
    heads = np.hstack([_digits(qids, 7), sep, _digits(rng.integers(0, passages, queries), 7), sep])
    with open(workdir / "triples.tsv", "wb") as f:
        for lo in range(0, queries, 2_000):
            rows = np.repeat(heads[lo : lo + 2_000], counts[lo : lo + 2_000], axis=0)
            neg = _digits(rng.integers(0, passages, len(rows)), 7)
            rows = np.hstack([rows, neg, np.full((len(rows), 2), (13, 10), np.uint8)])
            f.write(rows[rows != 0].tobytes())


def measure(cmd: list[str], cwd: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS in GB (sum over the process tree) of `cmd`."""
    peak = 0
    start = time.perf_counter()
    proc = psutil.Popen(cmd, cwd=cwd, env={**os.environ, "LC_ALL": "C"})
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            try:
                tree = [proc, *proc.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
            except psutil.Error:
                pass
            done.wait(0.1)

    sampler = threading.Thread(target=sample)
    sampler.start()
    if proc.wait() != 0:
        raise subprocess.CalledProcessError(proc.returncode, cmd)
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    return wall, peak / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/msmarco_bench"))
    ap.add_argument("--triples-per-query", type=int, default=TRIPLES_PER_QUERY)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    passages, queries = int(PASSAGES * args.scale), int(QUERIES * args.scale)

    t = time.perf_counter()
    write_collection(args.workdir, passages, rng)
    write_triples(args.workdir, queries, args.triples_per_query, passages, rng)
    lines = sum(1 for _ in open(args.workdir / "triples.tsv", "rb"))
    sizes = {n: (args.workdir / n).stat().st_size / 1e9 for n in ("para.txt", "para.title.txt", "triples.tsv")}
    print(
        f"generated {passages:,} passages, {queries:,} queries, {lines:,} triples in {time.perf_counter() - t:.0f} s;"
        f" sizes GB: {', '.join(f'{n} {s:.2f}' for n, s in sizes.items())}",
        flush=True,
    )

    python = [sys.executable, "-c"]
    steps = [
        ("title join", ["bash", "-c", SEED_JOIN], python + [OURS_JOIN], "corpus"),
        ("negatives from triples", ["bash", "-c", SEED_AWK], python + [OURS_NEG], "negatives"),
    ]
    rows = []
    for name, seed_cmd, ours_cmd, out in steps:
        seed_wall, seed_rss = measure(seed_cmd, args.workdir)
        ours_wall, ours_rss = measure(ours_cmd, args.workdir)
        same = subprocess.run(["cmp", f"{out}.seed.tsv", f"{out}.ours.tsv"], cwd=args.workdir).returncode == 0
        rows.append((name, seed_wall, seed_rss, ours_wall, ours_rss, same))
        print(
            f"{name}: seed {seed_wall:.1f} s {seed_rss:.2f} GB, ours {ours_wall:.1f} s {ours_rss:.2f} GB, "
            f"identical={same}",
            flush=True,
        )

    print(
        "\n| step | seed wall (s) | seed peak RSS (GB) | ours wall (s) | ours peak RSS (GB) | wall ours/seed "
        "| RSS ours/seed | byte-identical |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, sw, sr, ow, orr, same in rows:
        print(f"| {name} | {sw:.1f} | {sr:.2f} | {ow:.1f} | {orr:.2f} | {ow / sw:.2f} | {orr / sr:.2f} | {same} |")


if __name__ == "__main__":
    main()
