"""MS MARCO's text files (id<TAB>text, the title-joined corpus, TREC or RocketQA qrels) -> the workflow's
Parquet tables: corpus, queries and qrels."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from dr_core.atomic import atomic_path
from dr_core.data.beir import write_parquet
from dr_core.errors import DataError
from dr_core.textio import text_lines

CORPUS_SCHEMA = pa.schema([("id", pa.string()), ("title", pa.string()), ("text", pa.string())])


def iter_id_text(path: str | Path) -> Iterator[tuple[str, str]]:
    """(id, text) from `id<TAB>text` files: collection.tsv, para.txt, queries.*.tsv, train.query.txt."""
    path = Path(path)
    for lineno, line in text_lines(path):
        pid, sep, text = line.partition("\t")
        if not sep or not pid or "\t" in text:
            raise DataError(path, lineno, "expected 'id<TAB>text'")
        yield pid, text


def read_queries(path: str | Path) -> dict[str, str]:
    """qid -> text from `qid<TAB>text` (queries.*.tsv, train.query.txt); a repeated qid is an error."""
    path = Path(path)
    out: dict[str, str] = {}
    for lineno, (qid, text) in enumerate(iter_id_text(path), start=1):
        if qid in out:
            raise DataError(path, lineno, f"duplicate query id '{qid}'")
        out[qid] = text
    return out


def iter_corpus_tsv(path: str | Path) -> Iterator[tuple[str, str, str]]:
    """(pid, title, text) from the `pid<TAB>title<TAB>text` file that `join_titles` writes; the CR that a CRLF
    title row leaves at the end of a title is dropped."""
    path = Path(path)
    for lineno, line in text_lines(path):
        fields = line.split("\t")
        if len(fields) != 3 or not fields[0]:
            raise DataError(path, lineno, "expected 'pid<TAB>title<TAB>text'")
        yield fields[0], fields[1].rstrip("\r"), fields[2]


def read_msmarco_qrels(path: str | Path) -> dict[str, dict[str, int]]:
    """qid -> {pid: relevance} from TREC `qid 0 pid rel` lines, or RocketQA's two-column `qid pid` (rel 1)."""
    path = Path(path)
    out: dict[str, dict[str, int]] = {}
    for lineno, line in text_lines(path):
        fields = line.split()
        if len(fields) == 4 and fields[3].lstrip("-").isdigit():
            qid, pid, rel = fields[0], fields[2], int(fields[3])
        elif len(fields) == 2:
            qid, pid, rel = fields[0], fields[1], 1
        else:
            raise DataError(path, lineno, "expected 'qid 0 pid rel' or 'qid pid'")
        out.setdefault(qid, {})[pid] = rel
    return out


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
