"""MS MARCO's text files (id<TAB>text, the title-joined corpus) -> the workflow's Parquet tables: corpus and
queries (its qrels, TREC or RocketQA's, are `dr_core.data.formats.qrels_to_parquet`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from dr_core.atomic import atomic_path
from dr_core.data.formats import CORPUS_SCHEMA, iter_id_text, write_merged_queries
from dr_core.errors import DataError
from dr_core.textio import text_lines


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
    write_merged_queries(((path, read_queries(path).items()) for path in query_files), dest, "file")
