"""Try a trained round in one command: encode a typed query as the model was trained to see it (its saved query
template and length), search the round's index of a dataset (its `index.faiss` when built, else its embedding
shards, exact) and show the top hits with their titles and the start of their text. BM25 over the run's corpus,
and BM25 fused with the round (the recipe's tuned weight), answer too; a file of queries gives a TREC run."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch

from dr_core import layout
from dr_core.batching import Padder
from dr_core.bm25 import bm25_search
from dr_core.errors import DataError, MissingPathError
from dr_core.fusion import fuse
from dr_core.index import open_index, set_search_params
from dr_core.model import ENCODER_FILE, BiEncoder, load_tokenizer
from dr_core.search import load_ids
from dr_core.templates import format_queries
from dr_core.textio import subfolders


@dataclass
class Hit:
    rank: int
    docid: str
    score: float
    title: str
    text: str


class QueryEncoder:
    """A saved bi-encoder that embeds raw query strings with its own query template and length."""

    def __init__(self, model_dir: str | Path) -> None:
        self.model = BiEncoder.load(model_dir).eval()
        self.tokenizer = load_tokenizer(model_dir)
        self.padder = Padder(self.tokenizer, self.model.spec.q_max_len)

    @torch.inference_mode()
    def __call__(self, queries: list[str]) -> np.ndarray:
        texts = format_queries(queries, self.model.spec.query_template)
        rows = [np.array(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]
        batch = self.padder(rows)
        return self.model.encode(batch["input_ids"], batch["attention_mask"], is_query=True).float().numpy()


def _round_number(folder: Path) -> int | None:
    return layout.round_of(folder.name)


def model_rounds(run_dir: Path) -> list[int]:
    """The rounds of a run folder that have a model (`round<N>/model/dr_encoder.json`), in order."""
    rounds = [
        _round_number(p) for p in subfolders(run_dir) if (run_dir / layout.model(p.name) / ENCODER_FILE).is_file()
    ]
    return sorted(r for r in rounds if r is not None)


def run_folders(results: Path) -> list[str]:
    """The run folders in `results`: those with a round that has a model."""
    return [p.name for p in subfolders(results) if model_rounds(p)]


def embedded_datasets(round_dir: Path) -> list[str]:
    """The datasets a round folder has corpus embeddings of (`<dataset>/emb/shard*.npy`), in order."""
    return [p.name for p in subfolders(round_dir) if any((p / layout.EMB_DIR).glob("shard*.npy"))]


def _listed(names: list, none: str) -> str:
    return ", ".join(str(n) for n in names) if names else none


def check_run_dir(run_dir: str | Path) -> None:
    """A MissingPathError listing the run folders beside `run_dir` unless it is a folder."""
    run_dir = Path(run_dir)
    if run_dir.is_dir():
        return
    results = run_dir.parent
    if not results.is_dir():
        raise MissingPathError(f"{run_dir}: no such run folder, and no folder {results}")
    found = _listed(run_folders(results), "none")
    raise MissingPathError(f"{run_dir}: no such run folder; run folders in {results} (with round<N>/model): {found}")


def check_round(run_dir: str | Path, round_: int, dataset: str, model_dir: str | Path | None = None) -> None:
    """A MissingPathError saying what exists unless round `round_` of `run_dir` has a model (or `model_dir` is
    one) and corpus embeddings of `dataset`: checked before anything is loaded."""
    run_dir = Path(run_dir)
    check_run_dir(run_dir)
    round_dir, round_model = run_dir / layout.round_name(round_), run_dir / layout.round_model(round_)
    if model_dir:
        if not (Path(model_dir) / ENCODER_FILE).is_file():
            what = "no such folder" if not Path(model_dir).is_dir() else f"not a bi-encoder folder (no {ENCODER_FILE})"
            raise MissingPathError(f"--model {model_dir}: {what}")
    elif not (round_model / ENCODER_FILE).is_file():
        rounds = _listed(model_rounds(run_dir), "none yet")
        raise MissingPathError(f"{run_dir}: round {round_} has no model ({round_model}); rounds with a model: {rounds}")
    if not round_dir.is_dir():
        rounds = sorted(r for r in map(_round_number, subfolders(run_dir)) if r is not None)
        raise MissingPathError(f"{run_dir}: no folder round{round_}; rounds: {_listed(rounds, 'none yet')}")
    if dataset not in embedded_datasets(round_dir):
        found = _listed(embedded_datasets(round_dir), "none yet (run the round's encode step)")
        raise MissingPathError(
            f"{round_dir}: no corpus embeddings of {dataset!r} "
            f"({run_dir / layout.emb_dir(round_dir.name, dataset)}/shard*.npy); "
            f"datasets round {round_} has embeddings of: {found}"
        )


def check_corpus(run_dir: str | Path, dataset: str) -> Path:
    """The corpus of `dataset` in a run folder (`data/<dataset>/corpus.parquet`); a MissingPathError listing the
    datasets that have one when it is absent."""
    data = Path(run_dir) / layout.DATA_DIR
    corpus = Path(run_dir) / layout.corpus(dataset)
    if not corpus.is_file():
        found = _listed([p.name for p in subfolders(data) if (p / layout.CORPUS_FILE).is_file()], "none")
        raise MissingPathError(f"{corpus}: no such corpus; datasets with a corpus in {data}: {found}")
    return corpus


def shard_files(emb_dir: Path) -> list[tuple[Path, Path]]:
    """(embeddings, ids) of every shard in `emb_dir`, in shard order."""
    shards = sorted(emb_dir.glob("shard*.npy"), key=lambda p: int(re.sub(r"\D", "", p.stem) or 0))
    if not shards:
        raise FileNotFoundError(f"{emb_dir}: no shard*.npy (run the round's encode step for this dataset first)")
    return [(p, p.with_suffix(".ids.txt")) for p in shards]


def open_round_index(
    folder: Path, model_dir: Path, k: int = 100, nprobe: int | None = None
) -> tuple[faiss.Index, np.ndarray]:
    """The round's saved index (checked against these shards and this model; an IVF index searches `nprobe`
    lists, by default as many as `retrieve` does) or an exact inner-product index over its shards; with the doc
    id of every row."""
    pairs = shard_files(folder / layout.EMB_DIR)
    ids_paths = [ids for _, ids in pairs]
    if (folder / layout.INDEX_FILE).exists() and (folder / layout.INDEX_META).exists():
        index = open_index(folder / layout.INDEX_FILE, folder / layout.INDEX_META, ids_paths, model_dir)
        set_search_params(index, k, nprobe, None)
        return index, load_ids(ids_paths)
    vectors = np.concatenate([np.load(p).astype(np.float32) for p, _ in pairs])
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    return index, load_ids(ids_paths)


class RoundSearcher:
    """Search one round's corpus embeddings of one dataset of a run directory (`results/<name>`)."""

    def __init__(
        self,
        run_dir: str | Path,
        round_: int,
        dataset: str,
        model_dir: str | Path | None = None,
        nprobe: int | None = None,
    ) -> None:
        run_dir = Path(run_dir)
        check_round(run_dir, round_, dataset, model_dir)
        model_dir = Path(model_dir) if model_dir else run_dir / layout.round_model(round_)
        self.encoder = QueryEncoder(model_dir)
        folder = run_dir / layout.dataset_dir(layout.round_name(round_), dataset)
        self.index, self.ids = open_round_index(folder, model_dir, nprobe=nprobe)
        self.corpus = run_dir / layout.corpus(dataset)
        dim = self.encoder(["dimension check"]).shape[1]
        if dim != self.index.d:
            raise ValueError(f"{model_dir} embeds in {dim} dimensions, the index of round {round_} in {self.index.d}")

    def run(self, queries: pd.DataFrame, k: int, batch_size: int = 128) -> pd.DataFrame:
        """The top `k` of each query (columns qid, text) as a run (qid, docid, rank, score)."""
        parts = []
        for start in range(0, len(queries), batch_size):
            batch = queries.iloc[start : start + batch_size]
            scores, rows = self.index.search(self.encoder(batch["text"].tolist()), min(k, self.index.ntotal))
            for qid, row_scores, row_ids in zip(batch["qid"], scores, rows):
                found = row_ids >= 0
                docids = [str(d) for d in self.ids[row_ids[found]]]
                parts.append(pd.DataFrame({"qid": qid, "docid": docids, "score": row_scores[found].astype(float)}))
        return _ranked(parts)

    def search(self, query: str, k: int = 10, preview: int = 100) -> list[Hit]:
        """The top `k` passages for `query`: id, score, title and the first `preview` characters of the text."""
        return hits_of(self.run(pd.DataFrame({"qid": ["q"], "text": [query]}), k), self.corpus, preview)


def _ranked(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """Per-query frames (qid, docid, score), best first, as one run with ranks 1..n per query: the order the
    searcher returned (faiss's for dense, bm25s's for BM25), not re-ranked by dr_core.runs.rank_order; the hybrid
    run is ranked by fusion, in that order."""
    run = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["qid", "docid", "score"])
    run["rank"] = run.groupby("qid", sort=False).cumcount() + 1
    return run[["qid", "docid", "rank", "score"]]


def bm25_run(corpus: str | Path, queries: pd.DataFrame, k: int) -> pd.DataFrame:
    """BM25 (bm25s with the workflow's default k1, b, stemmer and stopwords) over a corpus Parquet file, indexed
    afresh for each call: a few seconds on SciFact."""
    table = pd.read_parquet(corpus, columns=["id", "title", "text"])
    ids, scores = bm25_search(table, queries, k)
    parts = [
        pd.DataFrame({"qid": qid, "docid": row_ids[row_ids != ""], "score": row_scores[row_ids != ""].astype(float)})
        for qid, row_ids, row_scores in zip(queries["qid"], ids, scores)
    ]
    return _ranked(parts)


def fusion_weight(run_dir: str | Path, round_: int, weight: float | None) -> float:
    """The dense weight of hybrid search: `weight` when given, else the recipe's tuned one
    (`bm25+round<r>/fusion.json`)."""
    if weight is not None:
        return weight
    tuned = Path(run_dir) / layout.fusion_weight(layout.round_name(round_))
    if not tuned.exists():
        found = [p.name for p in subfolders(Path(run_dir)) if (p / layout.FUSION_FILE).is_file()]
        raise MissingPathError(
            f"{tuned}: no tuned weight (add {round_} to hybrid.rounds and run, or pass --weight); "
            f"tuned weights: {_listed(found, 'none')}"
        )
    return float(json.loads(tuned.read_text())["weight"])


def hits_of(run: pd.DataFrame, corpus: str | Path, preview: int = 100) -> list[Hit]:
    """One query's ranking as hits with the title and the first `preview` characters of each passage."""
    docids = run["docid"].tolist()
    table = pq.read_table(corpus, columns=["id", "title", "text"], filters=[("id", "in", docids)])
    cols = table.to_pydict()
    by_id = {d: (t or "", x or "") for d, t, x in zip(cols["id"], cols["title"], cols["text"])}
    hits = []
    for rank, docid, score in zip(run["rank"], docids, run["score"]):
        title, text = by_id.get(docid, ("", ""))
        hits.append(Hit(int(rank), docid, float(score), title, text[:preview]))
    return hits


def system_run(
    system: str,
    queries: pd.DataFrame,
    k: int,
    corpus: str | Path,
    dense: RoundSearcher | None = None,
    weight: float | None = None,
    depth: int = 100,
) -> pd.DataFrame:
    """The run of `system` (dense, bm25, or hybrid: BM25 fused with the dense run, convex sum of min-max
    normalised scores with dense `weight`, both cut to `depth`) for `queries` (qid, text), `k` per query."""
    if system == "bm25":
        return bm25_run(corpus, queries, k)
    if dense is None:
        raise ValueError(f"system {system!r} needs a round (--round)")
    if system == "dense":
        return dense.run(queries, k)
    if system != "hybrid":
        raise ValueError(f"unknown system {system!r}: dense, bm25 or hybrid")
    depth = max(depth, k)
    fused = fuse(bm25_run(corpus, queries, depth), dense.run(queries, depth), "convex", depth, weight)
    order = {q: i for i, q in enumerate(queries["qid"])}
    fused = fused.sort_values(["qid", "rank"], key=lambda c: c.map(order) if c.name == "qid" else c, kind="stable")
    return fused.groupby("qid", sort=False).head(k).reset_index(drop=True)


def read_queries_file(path: str | Path) -> pd.DataFrame:
    """A TSV of queries, `qid<TAB>text` a line (MS MARCO's layout); a bad line is named."""
    rows = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        qid, sep, text = line.partition("\t")
        if not sep or not qid.strip() or not text.strip():
            raise DataError(path, number, "expected 'qid<TAB>query text'")
        rows.append((qid.strip(), text.strip()))
    if not rows:
        raise DataError(path, None, "no queries")
    return pd.DataFrame(rows, columns=["qid", "text"])


def format_hits(hits: list[Hit]) -> str:
    """One line a hit: rank, score, doc id, title | start of the text."""
    return "\n".join(f"{h.rank:>3}  {h.score:8.4f}  {h.docid:<12} {h.title} | {h.text}" for h in hits)
