"""MS MARCO files -> the workflow's Parquet tables (corpus, queries, qrels) and MS MARCO-format runs."""

from __future__ import annotations

import shutil
import tarfile
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from dr_core.atomic import atomic_path
from dr_core.beir import write_parquet
from dr_core.download import download
from dr_core.errors import DataError
from dr_core.msmarco import MSMARCO_FILES, iter_corpus_tsv, read_msmarco_qrels, read_queries, write_msmarco_run
from dr_core.runs import read_trec

# The raw files the workflow reads: name -> (published file, member inside it when it is an archive).
RAW_FILES: dict[str, tuple[str, str | None]] = {
    "para.txt": ("marco.tar.gz", "para.txt"),
    "para.title.txt": ("marco.tar.gz", "para.title.txt"),
    "train.query.txt": ("marco.tar.gz", "train.query.txt"),
    "qrels.train.tsv": ("qrels.train.tsv", None),
    "qidpidtriples.train.full.2.tsv.gz": ("qidpidtriples.train.full.2.tsv.gz", None),
    "queries.dev.small.tsv": ("collectionandqueries.tar.gz", "queries.dev.small.tsv"),
    "qrels.dev.small.tsv": ("collectionandqueries.tar.gz", "qrels.dev.small.tsv"),
}

CORPUS_SCHEMA = pa.schema([("id", pa.string()), ("title", pa.string()), ("text", pa.string())])


def fetch_raw_file(name: str, dest: str | Path, archive_dir: str | Path) -> None:
    """Download `name` (resumable, checksummed when published); files inside an archive are taken out of it."""
    if name not in RAW_FILES:
        raise ValueError(f"unknown MS MARCO file {name!r}; known: {sorted(RAW_FILES)}")
    published, member = RAW_FILES[name]
    spec = MSMARCO_FILES[published]
    checks = dict(md5=spec.md5, size=spec.size, headers=spec.headers)
    if member is None:
        download(spec.url, Path(dest), **checks)
        return
    archive = download(spec.url, Path(archive_dir) / published, **checks)
    with tarfile.open(archive, "r:*") as tar:
        found = next((m for m in tar if m.isfile() and Path(m.name).name == member), None)
        if found is None:
            raise FileNotFoundError(f"{archive}: no member named {member}")
        with atomic_path(dest) as tmp, tar.extractfile(found) as src, open(tmp, "wb") as out:
            shutil.copyfileobj(src, out, length=1 << 20)


def corpus_to_parquet(corpus_tsv: str | Path, dest: str | Path, batch_rows: int = 200_000) -> int:
    """Stream the title-joined `pid<TAB>title<TAB>text` file into corpus.parquet (bounded memory)."""
    n, seen_last = 0, None
    with atomic_path(dest) as tmp, pq.ParquetWriter(tmp, CORPUS_SCHEMA) as writer:
        cols: tuple[list[str], list[str], list[str]] = ([], [], [])
        for pid, title, text in iter_corpus_tsv(corpus_tsv):
            if pid == seen_last:
                raise DataError(corpus_tsv, n + 1, f"duplicate passage id '{pid}'")
            seen_last = pid
            for col, value in zip(cols, (pid, title, text)):
                col.append(value)
            n += 1
            if len(cols[0]) >= batch_rows:
                writer.write_batch(pa.record_batch(list(map(pa.array, cols)), schema=CORPUS_SCHEMA))
                cols = ([], [], [])
        if cols[0]:
            writer.write_batch(pa.record_batch(list(map(pa.array, cols)), schema=CORPUS_SCHEMA))
    return n


def queries_to_parquet(query_files: Sequence[str | Path], dest: str | Path) -> None:
    """Merge `qid<TAB>text` files (train and dev) into queries.parquet; one qid with two texts is an error."""
    merged: dict[str, str] = {}
    for path in query_files:
        for qid, text in read_queries(path).items():
            if merged.get(qid, text) != text:
                raise DataError(path, None, f"query '{qid}' has another text in an earlier file")
            merged[qid] = text
    write_parquet(pd.DataFrame({"qid": list(merged), "text": list(merged.values())}), dest)


def qrels_to_parquet(qrels_file: str | Path, corpus: str | Path, queries: str | Path, dest: str | Path) -> None:
    """Validate MS MARCO qrels (TREC or RocketQA columns) against the prepared ids; write qrels.<split>.parquet."""
    qrels = read_msmarco_qrels(qrels_file)
    qids = set(pd.read_parquet(queries, columns=["qid"])["qid"])
    docids = set(pd.read_parquet(corpus, columns=["id"])["id"])
    rows = []
    for qid, judged in qrels.items():
        if qid not in qids:
            raise DataError(qrels_file, None, f"unknown query id '{qid}'")
        for pid, rel in judged.items():
            if pid not in docids:
                raise DataError(qrels_file, None, f"unknown passage id '{pid}' (query '{qid}')")
            rows.append((qid, pid, rel))
    write_parquet(pd.DataFrame(rows, columns=["qid", "docid", "rel"]), dest)


def trec_to_msmarco_run(run_trec: str | Path, dest: str | Path) -> None:
    """The same ranking in the MS MARCO format `qid<TAB>pid<TAB>rank`."""
    run = read_trec(run_trec)
    ranked = {qid: list(zip(group["docid"], group["score"])) for qid, group in run.groupby("qid", sort=False)}
    write_msmarco_run(ranked, dest)
