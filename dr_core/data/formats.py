"""The workflow's data formats, which every reader writes and every step reads: the Parquet tables of a dataset
(corpus: id, title, text; queries: qid, text; qrels: qid, docid, rel), the text files the readers share
(`id<TAB>text`, TREC or two-column qrels) and the negatives file (`qid<TAB>pid,pid,...`).

A new dataset format needs only a reader that yields its records and calls these: the tables come out the same
whoever wrote them, and bad input is a DataError naming the file and the line."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa

from dr_core.atomic import atomic_path
from dr_core.errors import DataError
from dr_core.textio import text_lines

CORPUS_SCHEMA = pa.schema([("id", pa.string()), ("title", pa.string()), ("text", pa.string())])
QRELS_COLUMNS = ["qid", "docid", "rel"]


def write_parquet(df: pd.DataFrame, dest: str | Path) -> None:
    """Write a DataFrame to Parquet atomically."""
    with atomic_path(dest) as tmp:
        df.to_parquet(tmp, index=False)


def corpus_table(ids: list[str], titles: list[str], texts: list[str]) -> pd.DataFrame:
    """The corpus table (id, title, text)."""
    return pd.DataFrame({"id": ids, "title": titles, "text": texts})


def queries_table(qids: Iterable[str], texts: Iterable[str]) -> pd.DataFrame:
    """The queries table (qid, text)."""
    return pd.DataFrame({"qid": list(qids), "text": list(texts)})


def qrels_table(rows: Iterable[tuple[str, str, int]]) -> pd.DataFrame:
    """The qrels table (qid, docid, rel) of `(qid, docid, rel)` rows."""
    return pd.DataFrame(rows, columns=QRELS_COLUMNS)


def prepared_ids(corpus: str | Path, queries: str | Path) -> tuple[set[str], set[str]]:
    """(query ids, passage ids) of a prepared queries.parquet and corpus.parquet, to check judgements against."""
    docids = set(pd.read_parquet(corpus, columns=["id"])["id"])
    qids = set(pd.read_parquet(queries, columns=["qid"])["qid"])
    return qids, docids


def unique_texts(
    records: Iterable[tuple[int, str, str]], path: Path, kind: str, plural: str
) -> tuple[list[str], list[str]]:
    """(ids, texts) of `(line, id, text)` records; a repeated id, an empty text or no record at all is a
    DataError naming `path` and the line (`kind`/`plural` name the records in the message)."""
    ids, texts, seen = [], [], {}
    for lineno, rid, text in records:
        if rid in seen:
            raise DataError(path, lineno, f"duplicate id '{rid}' (first on line {seen[rid]})")
        if not text.strip():
            raise DataError(path, lineno, f"empty {kind} '{rid}'")
        seen[rid] = lineno
        ids.append(rid)
        texts.append(text)
    if not ids:
        raise DataError(path, None, f"no {plural}")
    return ids, texts


def write_merged_queries(
    sources: Iterable[tuple[str | Path, Iterable[tuple[str, str]]]], dest: str | Path, where: str
) -> None:
    """Several sources' (qid, text) pairs, each with its path -> one queries.parquet; a query with another text in
    an earlier source (an earlier `where`: split, file) is an error naming the later source."""
    merged: dict[str, str] = {}
    for path, pairs in sources:
        for qid, text in pairs:
            if merged.setdefault(qid, text) != text:
                raise DataError(path, None, f"query '{qid}' has another text in an earlier {where}")
    write_parquet(queries_table(merged, merged.values()), dest)


def iter_id_text(path: str | Path) -> Iterator[tuple[str, str]]:
    """(id, text) from `id<TAB>text` files: collection.tsv, para.txt, queries.*.tsv, train.query.txt."""
    path = Path(path)
    for lineno, line in text_lines(path):
        pid, sep, text = line.partition("\t")
        if not sep or not pid or "\t" in text:
            raise DataError(path, lineno, "expected 'id<TAB>text'")
        yield pid, text


def read_trec_qrels(path: str | Path) -> dict[str, dict[str, int]]:
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


def qrels_to_parquet(qrels_file: str | Path, corpus: str | Path, queries: str | Path, dest: str | Path) -> None:
    """Validate a qrels file (TREC or two-column, as `read_trec_qrels`) against the prepared ids; write it as the
    qrels table."""
    qrels = read_trec_qrels(qrels_file)
    qids, docids = prepared_ids(corpus, queries)
    rows = []
    for qid, judged in qrels.items():
        if qid not in qids:
            raise DataError(qrels_file, None, f"unknown query id '{qid}'")
        for pid, rel in judged.items():
            if pid not in docids:
                raise DataError(qrels_file, None, f"unknown passage id '{pid}' (query '{qid}')")
            rows.append((qid, pid, rel))
    write_parquet(qrels_table(rows), dest)


def read_negatives(path: str | Path) -> dict[str, list[str]]:
    """qid -> pids from `qid<TAB>pid,pid,...` (ours, the seed's triples output, RocketQA `train.negatives.tsv`).

    A qid on several lines (the seed writes one line per run of consecutive triples) gets the pids of all of
    them, in file order. Plain or .gz; CRLF tolerated.
    """
    path = Path(path)
    out: dict[str, list[str]] = {}
    for lineno, line in text_lines(path):
        if not line:
            continue
        qid, sep, pids = line.partition("\t")
        if not sep or not qid or "\t" in pids:
            raise DataError(path, lineno, "expected 'qid<TAB>pid,pid,...'")
        pid_list = pids.split(",")
        if not all(pid_list):
            raise DataError(path, lineno, f"empty pid in the list of query '{qid}'")
        out.setdefault(qid, []).extend(pid_list)
    return out


def write_negatives(negatives: dict[str, list[str]], dest: str | Path) -> None:
    """Write `qid<TAB>pid,pid,...` lines, atomically; queries with no negatives are left out."""
    with atomic_path(dest) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for qid, pids in negatives.items():
            if pids:
                f.write(f"{qid}\t{','.join(pids)}\n")
