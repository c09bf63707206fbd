"""Try a trained round in one command: encode a typed query as the model was trained to see it (its saved query
template and length), search the round's index of a dataset (its `index.faiss` when built, else its embedding
shards, exact) and show the top hits with their titles and the start of their text."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import pyarrow.parquet as pq
import torch

from dr_core.batching import Padder
from dr_core.index import open_index
from dr_core.model import BiEncoder, load_tokenizer
from dr_core.search import load_ids
from dr_core.tokenization import format_queries


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


def shard_files(emb_dir: Path) -> list[tuple[Path, Path]]:
    """(embeddings, ids) of every shard in `emb_dir`, in shard order."""
    shards = sorted(emb_dir.glob("shard*.npy"), key=lambda p: int(re.sub(r"\D", "", p.stem) or 0))
    if not shards:
        raise FileNotFoundError(f"{emb_dir}: no shard*.npy (run the round's encode step for this dataset first)")
    return [(p, p.with_suffix(".ids.txt")) for p in shards]


def open_round_index(folder: Path, model_dir: Path) -> tuple[faiss.Index, np.ndarray]:
    """The round's saved index (checked against these shards and this model) or an exact inner-product index
    over its shards; with the doc id of every row."""
    pairs = shard_files(folder / "emb")
    ids_paths = [ids for _, ids in pairs]
    if (folder / "index.faiss").exists() and (folder / "index.json").exists():
        return open_index(folder / "index.faiss", folder / "index.json", ids_paths, model_dir), load_ids(ids_paths)
    vectors = np.concatenate([np.load(p).astype(np.float32) for p, _ in pairs])
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    return index, load_ids(ids_paths)


class RoundSearcher:
    """Search one round's corpus embeddings of one dataset of a run directory (`results/<name>`)."""

    def __init__(self, run_dir: str | Path, round_: int, dataset: str, model_dir: str | Path | None = None) -> None:
        run_dir = Path(run_dir)
        model_dir = Path(model_dir) if model_dir else run_dir / f"round{round_}" / "model"
        self.encoder = QueryEncoder(model_dir)
        self.index, self.ids = open_round_index(run_dir / f"round{round_}" / dataset, model_dir)
        self.corpus = run_dir / "data" / dataset / "corpus.parquet"
        dim = self.encoder(["dimension check"]).shape[1]
        if dim != self.index.d:
            raise ValueError(f"{model_dir} embeds in {dim} dimensions, the index of round {round_} in {self.index.d}")

    def search(self, query: str, k: int = 10, preview: int = 100) -> list[Hit]:
        """The top `k` passages for `query`: id, score, title and the first `preview` characters of the text."""
        scores, rows = self.index.search(self.encoder([query]), min(k, self.index.ntotal))
        found = [(int(r), float(s)) for r, s in zip(rows[0], scores[0]) if r >= 0]
        docids = [str(self.ids[r]) for r, _ in found]
        table = pq.read_table(self.corpus, columns=["id", "title", "text"], filters=[("id", "in", docids)])
        cols = table.to_pydict()
        by_id = {d: (t or "", x or "") for d, t, x in zip(cols["id"], cols["title"], cols["text"])}
        hits = []
        for rank, (docid, (_, score)) in enumerate(zip(docids, found), 1):
            title, text = by_id.get(docid, ("", ""))
            hits.append(Hit(rank, docid, score, title, text[:preview]))
        return hits


def format_hits(hits: list[Hit]) -> str:
    """One line a hit: rank, score, doc id, title | start of the text."""
    return "\n".join(f"{h.rank:>3}  {h.score:8.4f}  {h.docid:<12} {h.title} | {h.text}" for h in hits)
