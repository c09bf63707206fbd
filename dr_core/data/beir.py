"""Read a BEIR-format collection (corpus.jsonl, queries.jsonl, qrels/<split>.tsv), validate it, write Parquet."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import pandas as pd

from dr_core.data.dev_split import carve
from dr_core.data.formats import corpus_table, prepared_ids, qrels_table, queries_table, unique_texts, write_parquet
from dr_core.errors import DataError
from dr_core.textio import json_records

log = logging.getLogger(__name__)


def _field(rec: dict, key: str, path: Path, lineno: int, required: bool = True) -> str:
    value = rec.get(key)
    if value is None:
        if required:
            raise DataError(path, lineno, f"missing field '{key}'")
        return ""
    if not isinstance(value, (str, int)):
        raise DataError(path, lineno, f"field '{key}' must be a string")
    return str(value)


def read_corpus(path: str | Path, empty_docs: str = "error") -> tuple[pd.DataFrame, set[str]]:
    """Corpus as a DataFrame (id, title, text) and the ids dropped as empty.

    `empty_docs`: 'error' or 'drop' for a document with neither title nor text.
    """
    path = Path(path)
    ids, titles, texts, seen, dropped = [], [], [], {}, set()
    for lineno, rec in json_records(path):
        doc_id = _field(rec, "_id", path, lineno)
        title = _field(rec, "title", path, lineno, required=False)
        text = _field(rec, "text", path, lineno)
        if doc_id in seen:
            raise DataError(path, lineno, f"duplicate id '{doc_id}' (first on line {seen[doc_id]})")
        seen[doc_id] = lineno
        if not text.strip() and not title.strip():
            if empty_docs == "drop":
                log.warning("%s:%d: dropping empty document '%s'", path, lineno, doc_id)
                dropped.add(doc_id)
                continue
            raise DataError(path, lineno, f"empty document '{doc_id}' (set empty_docs: drop to skip such documents)")
        ids.append(doc_id)
        titles.append(title)
        texts.append(text)
    if not ids:
        raise DataError(path, None, "no documents")
    return corpus_table(ids, titles, texts), dropped


def read_queries(path: str | Path) -> pd.DataFrame:
    """Queries as a DataFrame (qid, text)."""
    path = Path(path)
    records = (
        (lineno, _field(rec, "_id", path, lineno), _field(rec, "text", path, lineno))
        for lineno, rec in json_records(path)
    )
    qids, texts = unique_texts(records, path, "query", "queries")
    return queries_table(qids, texts)


def read_qrels(
    path: str | Path, qids: set[str], docids: set[str], dropped_docids: set[str] = frozenset()
) -> pd.DataFrame:
    """Qrels (qid, docid, rel) from a BEIR TSV with a header; every id must be known."""
    path = Path(path)
    rows: list[tuple[str, str, int]] = []
    with open(path, encoding="utf-8", newline="") as f:
        for lineno, fields in enumerate(csv.reader(f, delimiter="\t"), start=1):
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue
            if lineno == 1 and fields[0] == "query-id":
                continue
            if len(fields) != 3:
                raise DataError(
                    path, lineno, f"expected 3 tab-separated fields (query-id, corpus-id, score), got {len(fields)}"
                )
            qid, docid, score = (x.strip() for x in fields)
            try:
                rel = int(score)
            except ValueError:
                raise DataError(path, lineno, f"score '{score}' is not an integer") from None
            if qid not in qids:
                raise DataError(path, lineno, f"unknown query id '{qid}'")
            if docid in dropped_docids:
                continue
            if docid not in docids:
                raise DataError(path, lineno, f"unknown corpus id '{docid}'")
            rows.append((qid, docid, rel))
    if not rows:
        raise DataError(path, None, "no judgements")
    return qrels_table(rows)


def prepare_collection(src_dir: str | Path, out_dir: str | Path, empty_docs: str = "error") -> None:
    """Validate a BEIR folder's corpus and queries; write corpus.parquet and queries.parquet to `out_dir`."""
    src_dir, out_dir = Path(src_dir), Path(out_dir)
    corpus, _ = read_corpus(src_dir / "corpus.jsonl", empty_docs)
    queries = read_queries(src_dir / "queries.jsonl")
    write_parquet(corpus, out_dir / "corpus.parquet")
    write_parquet(queries, out_dir / "queries.parquet")


def prepare_qrels(
    src_dir: str | Path,
    split: str,
    corpus: str | Path,
    queries: str | Path,
    dest: str | Path,
    empty_docs: str = "error",
    carve_dev: dict | None = None,
) -> None:
    """Validate `qrels/<split>.tsv` against the prepared corpus and queries; write it as Parquet. `carve_dev`
    ({share, count, seed, keep}) writes only the dev queries carved from the split, or only the rest
    (dr_core.data.dev_split)."""
    src_dir = Path(src_dir)
    qids, docids = prepared_ids(corpus, queries)
    dropped = _jsonl_ids(src_dir / "corpus.jsonl") - docids if empty_docs == "drop" else set()
    qrels = read_qrels(src_dir / "qrels" / f"{split}.tsv", qids, docids, dropped)
    if carve_dev is not None:
        qrels = carve(qrels, **carve_dev)
    write_parquet(qrels, dest)


def _jsonl_ids(path: Path) -> set[str]:
    return {_field(rec, "_id", path, lineno) for lineno, rec in json_records(path)}
