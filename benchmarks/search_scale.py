"""Retrieval at scale on synthetic embeddings of the right shapes (issue 12).

Parts (each prints one JSON line; peak RSS is the process's, so run one part per process for its own peak):
  flat    exact Flat through dr_core.search (search + tie ranking + id lookup) vs faiss alone, same index and
          queries; also faiss alone with distance_compute_blas_threshold lowered to 20
  ann     an approximate index (IVF/HNSW/IVF-PQ; --factory) through the workflow's build_index/open_index:
          build time, index size, recall@k against exact, q/s against exact (exact measured on the same queries)
  merge   --queries x --depth results: ranking + run write (dr_core.search), then streamed mining
          (dr_core.runs.iter_run + dr_core.negatives.mine): time and peak RSS

Docs are drawn around `--centres` random unit centres (noise of norm --noise), queries near random docs, so
an IVF has structure to use (real embeddings cluster; uniform random vectors would not). Shards are written to
--workdir in chunks (float16 with --fp16), so generating 8.8M x 768 never holds it in memory.

  python benchmarks/search_scale.py flat --n 200000 --dim 384 --queries 2000
  python benchmarks/search_scale.py ann --n 200000 --dim 384 --queries 2000 --factory IVF2048,Flat --nprobe 128
  python benchmarks/search_scale.py merge --queries 50000 --depth 200
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import resource
import time
from pathlib import Path

import faiss
import numpy as np
import pandas as pd

from dr_core.index import IndexSettings, build_index, open_index, set_search_params
from dr_core.negatives import mine
from dr_core.runs import iter_run
from dr_core.search import load_ids, search_batch, search_to_run, tie_keys

CHUNK = 100_000
EXACT_CHUNK = 20_000  # docs a matrix product: queries x 20k float32 scores at a time


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def make_corpus(a: argparse.Namespace) -> tuple[list[tuple[Path, Path]], np.ndarray, np.ndarray, Path]:
    """Shards of `a.n` docs on disk (made once per shape), the queries, the row each query was drawn near (its
    source), and a model folder for the index hashes."""
    rng = np.random.default_rng(a.seed)
    centres = unit(rng.normal(size=(a.centres, a.dim)))
    d = Path(a.workdir) / f"n{a.n}_d{a.dim}_fp16{int(a.fp16)}"
    d.mkdir(parents=True, exist_ok=True)
    pairs, bounds = [], [int(b) for b in np.linspace(0, a.n, a.shards + 1)]
    for s in range(a.shards):
        emb, ids = d / f"shard{s}.npy", d / f"shard{s}.ids.txt"
        pairs.append((emb, ids))
        if ids.exists():
            continue
        out = np.lib.format.open_memmap(
            emb, "w+", np.float16 if a.fp16 else np.float32, (bounds[s + 1] - bounds[s], a.dim)
        )
        for start in range(0, len(out), CHUNK):
            m = min(CHUNK, len(out) - start)
            out[start : start + m] = unit(
                centres[rng.integers(0, a.centres, m)] + a.noise / a.dim**0.5 * rng.normal(size=(m, a.dim))
            )
        out.flush()
        ids.write_text("".join(f"{i}\n" for i in range(bounds[s], bounds[s + 1])))
    qrng = np.random.default_rng(a.seed + 1)  # the same queries whether the shards were made now or before
    picks = np.sort(qrng.choice(a.n, size=a.queries, replace=False))
    docs = np.concatenate([np.asarray(np.load(e, mmap_mode="r")[picks[(picks >= lo) & (picks < hi)] - lo], np.float32)
                           for (e, _), lo, hi in zip(pairs, bounds[:-1], bounds[1:])])  # fmt: skip
    queries = unit(docs + a.noise / a.dim**0.5 * qrng.normal(size=docs.shape))
    model = d / "model"
    model.mkdir(exist_ok=True)
    (model / "dr_encoder.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"synthetic")
    return pairs, queries, picks, model


def exact_top(pairs: list[tuple[Path, Path]], queries: np.ndarray, k: int) -> tuple[np.ndarray, float]:
    """Exact top-k rows by chunked matrix products over the shards (bounded memory), and their q/s; when the
    vectors fit 4 GB the q/s is faiss Flat's (dr_core's exact search) instead, the faster of the two here."""
    t0, best_s, best_r, offset = time.perf_counter(), None, None, 0
    for emb, _ in pairs:
        arr = np.load(emb, mmap_mode="r")
        for start in range(0, len(arr), EXACT_CHUNK):
            s = queries @ np.asarray(arr[start : start + EXACT_CHUNK], np.float32).T
            r = np.broadcast_to(np.arange(offset + start, offset + start + s.shape[1]), s.shape)
            if best_s is not None:
                s, r = np.concatenate([best_s, s], 1), np.concatenate([best_r, r], 1)
            top = np.argpartition(-s, min(k, s.shape[1] - 1), axis=1)[:, :k]
            best_s, best_r = np.take_along_axis(s, top, 1), np.take_along_axis(r, top, 1)
        offset += len(arr)
    qps = len(queries) / (time.perf_counter() - t0)
    if offset * queries.shape[1] * 4 < 4 * 2**30:
        flat = faiss.IndexFlatIP(queries.shape[1])
        for emb, _ in pairs:
            flat.add(np.asarray(np.load(emb, mmap_mode="r"), np.float32))
        t0 = time.perf_counter()
        for start in range(0, len(queries), 8192):
            flat.search(queries[start : start + 8192], k)
        qps = len(queries) / (time.perf_counter() - t0)
    return best_r, qps


def built_index(a: argparse.Namespace, pairs, model, factory: str) -> tuple[faiss.Index, dict]:
    d = pairs[0][0].parent
    name = factory.replace(",", "_")
    t0 = time.perf_counter()
    meta = build_index(pairs, model, d / f"{name}.faiss", d / f"{name}.json", IndexSettings(factory, seed=a.seed))
    build_s = time.perf_counter() - t0
    index = open_index(d / f"{name}.faiss", d / f"{name}.json", [i for _, i in pairs], model)
    size = (d / f"{name}.faiss").stat().st_size / 2**30
    return index, {"factory": meta["factory"], "build_s": round(build_s, 1), "index_gb": round(size, 3)}


def timed_search(index, queries, k, batch, fn) -> float:
    t0 = time.perf_counter()
    for start in range(0, len(queries), batch):
        fn(index, queries[start : start + batch], k)
    return len(queries) / (time.perf_counter() - t0)


def part_flat(a: argparse.Namespace) -> dict:
    pairs, queries, _, model = make_corpus(a)
    index, info = built_index(a, pairs, model, "Flat")
    ids = load_ids([i for _, i in pairs])
    keys = tie_keys(ids)
    ours = lambda ix, q, k: ids[search_batch(ix, q, k, keys)[0]]  # noqa: E731 (ranking + id lookup)
    alone = lambda ix, q, k: ix.search(q, k)  # noqa: E731
    out = {**info}
    for rep in range(2):  # alternate, twice, so a load change on the machine hits both alike
        out[f"faiss_qps_{rep}"] = round(timed_search(index, queries, a.k, a.batch, alone), 1)
        out[f"ours_qps_{rep}"] = round(timed_search(index, queries, a.k, a.batch, ours), 1)
    old = faiss.cvar.distance_compute_blas_threshold
    faiss.cvar.distance_compute_blas_threshold = 20
    out["faiss_qps_blas_threshold_20"] = round(timed_search(index, queries, a.k, a.batch, alone), 1)
    faiss.cvar.distance_compute_blas_threshold = old
    out["blas_threshold_default"] = old
    return out


def _exact_to_file(pairs, queries: np.ndarray, k: int, cache: Path) -> None:
    rows, qps = exact_top(pairs, queries, k)
    tmp = cache.with_name(f"tmp_{cache.name}")
    np.savez(tmp, rows=rows, qps=qps)
    tmp.replace(cache)


def exact_cached(pairs, queries: np.ndarray, k: int, cache: Path) -> tuple[np.ndarray, float]:
    """The exact top-k and its q/s, computed once per shape and query set in a child process (so its memory is not
    this process's peak RSS) and kept in `cache`."""
    if not cache.exists():
        child = multiprocessing.get_context("fork").Process(target=_exact_to_file, args=(pairs, queries, k, cache))
        child.start()
        child.join()
        if child.exitcode != 0:
            raise RuntimeError(f"the exact search exited {child.exitcode}")
    saved = np.load(cache)
    return saved["rows"], float(saved["qps"])


def source_hits(rows: np.ndarray, sources: np.ndarray, depth: int) -> float:
    """Share of queries whose source doc is among their first `depth` rows."""
    return round(float(np.mean([src in r[:depth] for r, src in zip(rows, sources)])), 4)


def part_ann(a: argparse.Namespace) -> dict:
    pairs, queries, sources, model = make_corpus(a)
    cache = pairs[0][0].parent / f"exact_q{a.queries}_k{a.k}_seed{a.seed}.npz"
    exact, exact_qps = exact_cached(pairs, queries, a.k, cache)
    index, info = built_index(a, pairs, model, a.factory)
    keys = tie_keys(load_ids([i for _, i in pairs]))
    # the exact rows come in no order (an argpartition): only set measures on them
    out = {**info, "exact_qps": round(exact_qps, 1), f"exact_source@{a.k}": source_hits(exact, sources, a.k)}
    for nprobe in a.nprobe or [None]:
        set_search_params(index, a.k, nprobe, a.ef_search)
        rows, t0 = [], time.perf_counter()
        for start in range(0, len(queries), a.batch):
            rows.append(search_batch(index, queries[start : start + a.batch], a.k, keys)[0])
        qps = len(queries) / (time.perf_counter() - t0)
        rows = np.concatenate(rows)
        recall = np.mean([len(set(r) & set(e)) / a.k for r, e in zip(rows, exact)])
        ivf = faiss.try_extract_index_ivf(index)
        out[f"nprobe_{ivf.nprobe if ivf else None}"] = {
            "ef_search": a.ef_search,
            f"recall@{a.k}": round(float(recall), 4),
            "source@10": source_hits(rows, sources, 10),
            f"source@{a.k}": source_hits(rows, sources, a.k),
            "qps": round(qps, 1),
            "speedup": round(qps / exact_qps, 1),
        }
    return out


def part_merge(a: argparse.Namespace) -> dict:
    """Ranking, id lookup and run write of --queries x --depth results (a Flat index stand-in returns them), then
    streamed mining of the written run."""
    rng, d = np.random.default_rng(a.seed), Path(a.workdir)
    d.mkdir(parents=True, exist_ok=True)
    ids = np.array([str(i) for i in range(a.n)])

    class Results:  # stands in for an index: random rows and scores, so only our code is timed
        ntotal, d = a.n, 1

        def search(self, q, k):
            return rng.random((len(q), k), dtype=np.float32), rng.integers(0, a.n, (len(q), k))

    starts = range(0, a.queries, a.batch)
    batches = (
        (qids := [f"q{i}" for i in range(s, min(s + a.batch, a.queries))], np.zeros((len(qids), 1))) for s in starts
    )
    t0 = time.perf_counter()
    search_to_run(Results(), batches, ids, a.depth, d / "run.trec", "bench")
    write_s = time.perf_counter() - t0
    qrels = pd.DataFrame({"qid": [f"q{i}" for i in range(a.queries)], "docid": "0", "rel": 1})
    t0 = time.perf_counter()
    negs = mine(iter_run(d / "run.trec"), qrels, 3, a.depth, 30, a.seed)
    mine_s = time.perf_counter() - t0
    size = (d / "run.trec").stat().st_size / 2**30
    (d / "run.trec").unlink()
    return {"queries": a.queries, "depth": a.depth, "rank_and_write_s": round(write_s, 1), "run_gb": round(size, 2),
            "mine_s": round(mine_s, 1), "mined_queries": len(negs)}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("part", choices=["flat", "ann", "merge"])
    p.add_argument("--n", type=int, default=200_000)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--queries", type=int, default=2000)
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--depth", type=int, default=200)
    p.add_argument("--batch", type=int, default=8192, help="queries a search call (index.query_batch)")
    p.add_argument("--shards", type=int, default=4)
    p.add_argument("--centres", type=int, default=2000)
    p.add_argument("--noise", type=float, default=0.5, help="noise norm around a (unit) centre, and around a doc")
    p.add_argument("--factory", default="IVF2048,Flat")
    p.add_argument("--nprobe", type=int, nargs="+", help="IVF lists probed; several values: one search each")
    p.add_argument("--ef-search", type=int)
    p.add_argument("--fp16", action="store_true", help="shards stored in float16")
    p.add_argument("--threads", type=int, default=0, help="faiss threads (0: faiss's default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", default="/tmp/dr_search_scale")
    a = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")  # build phases on stderr
    if a.threads:
        faiss.omp_set_num_threads(a.threads)
    out = {
        "part": a.part,
        "n": a.n,
        "dim": a.dim,
        **{"flat": part_flat, "ann": part_ann, "merge": part_merge}[a.part](a),
    }
    out["peak_rss_gb"] = round(peak_rss_gb(), 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
