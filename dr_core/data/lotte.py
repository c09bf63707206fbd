"""LoTTE (ColBERTv2's Long-Tail Topic-stratified Evaluation) -> the workflow's Parquet tables.

Two layouts of one `<domain>/<split>` folder are read:
- LoTTE's own release: `collection.tsv` (pid<TAB>text), `questions.<set>.tsv` (qid<TAB>text) and
  `qas.<set>.jsonl` ({"qid", "query", "answer_pids": [pid, ...]}), `<set>` being `search` or `forum`;
- Disentangled Retriever's conversion (its prepare_lotte.py): `corpus.tsv` (pid<TAB>text), `query.<set>`
  (qid<TAB>text) and `qrels.<set>` (TREC `qid<TAB>0<TAB>pid<TAB>rel`).
LoTTE passages have no titles; every answer passage is relevant (rel 1), as LoTTE's Success@5 counts them.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pandas as pd

from dr_core.atomic import atomic_path
from dr_core.data.download import download, extract
from dr_core.data.formats import (
    corpus_table,
    iter_id_text,
    prepared_ids,
    qrels_table,
    queries_table,
    unique_texts,
    write_parquet,
)
from dr_core.errors import DataError
from dr_core.textio import json_records, text_lines

# The release archive ColBERT's LoTTE.md links to. ColBERT publishes no checksum; the md5 and size are
# ir_datasets' (etc/downloads.json, entry "lotte"), whose CI re-verifies them against the live file.
LOTTE_URL = "https://downloads.cs.stanford.edu/nlp/data/colbert/colbertv2/lotte.tar.gz"
LOTTE_MD5 = "3b2e88b1d66933627462950b4c3f5d0f"
LOTTE_SIZE = 3_576_167_599
DOMAINS = ("writing", "recreation", "science", "technology", "lifestyle", "pooled")
QUERY_SETS = ("search", "forum")

# file names of each layout: corpus, queries of a query set, judgements of a query set
_LAYOUTS = {
    "lotte": ("collection.tsv", "questions.{}.tsv", "qas.{}.jsonl"),
    "converted": ("corpus.tsv", "query.{}", "qrels.{}"),
}


def find_folder(src: str | Path, domain: str, split: str) -> Path:
    """The `<domain>/<split>` folder under `src` (the release's root, or the folder holding `lotte/`), or `src`
    itself when it is that folder already."""
    src = Path(src)
    for folder in (src / domain / split, src / "lotte" / domain / split):
        if folder.is_dir():
            return folder
    if not src.is_dir():
        raise DataError(src, None, "no such folder")
    return src


def layout_files(folder: Path, query_set: str) -> tuple[str, Path, Path, Path]:
    """(layout, corpus, queries, judgements) of a LoTTE folder; a missing file is an error naming it."""
    if query_set not in QUERY_SETS:
        raise ValueError(f"query set {query_set!r} is not one of {QUERY_SETS}")
    layout = "converted" if (folder / "corpus.tsv").exists() else "lotte"
    corpus, queries, judged = (folder / name.format(query_set) for name in _LAYOUTS[layout])
    for path in (corpus, queries, judged):
        if not path.exists():
            raise DataError(path, None, f"missing ({layout} layout of LoTTE, query set '{query_set}')")
    return layout, corpus, queries, judged


def _numbered(path: Path):
    """(line, id, text) of an `id<TAB>text` file."""
    return ((lineno, rid, text) for lineno, (rid, text) in enumerate(iter_id_text(path), start=1))


def read_collection(path: Path) -> pd.DataFrame:
    """Passages (id, title '', text) from `pid<TAB>text`; a repeated id or an empty passage is an error."""
    ids, texts = unique_texts(_numbered(path), path, "passage", "passages")
    return corpus_table(ids, [""] * len(ids), texts)


def read_question_file(path: Path) -> pd.DataFrame:
    """Queries (qid, text) from `qid<TAB>text`; a repeated id or an empty query is an error."""
    qids, texts = unique_texts(_numbered(path), path, "query", "queries")
    return queries_table(qids, texts)


def _qas_pairs(path: Path):
    """(line, qid, pid) from `qas.<set>.jsonl`."""
    for lineno, rec in json_records(path):
        answers = rec.get("answer_pids")
        if "qid" not in rec or not isinstance(answers, list):
            raise DataError(path, lineno, 'expected {"qid": .., "answer_pids": [pid, ...]}')
        for pid in answers:
            yield lineno, str(rec["qid"]), str(pid)


def _trec_pairs(path: Path):
    """(line, qid, pid) of the judgements with rel > 0 from TREC `qid 0 pid rel` lines."""
    for lineno, line in text_lines(path):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 4 or not fields[3].lstrip("-").isdigit():
            raise DataError(path, lineno, "expected 'qid 0 pid rel'")
        if int(fields[3]) > 0:
            yield lineno, fields[0], fields[2]


def read_judgements(path: Path, layout: str, qids: set[str], docids: set[str]) -> pd.DataFrame:
    """Qrels (qid, docid, rel 1) of one query set; every id must be known."""
    pairs = _qas_pairs(path) if layout == "lotte" else _trec_pairs(path)
    rows = {}
    for lineno, qid, pid in pairs:
        if qid not in qids:
            raise DataError(path, lineno, f"unknown query id '{qid}'")
        if pid not in docids:
            raise DataError(path, lineno, f"unknown passage id '{pid}'")
        rows[(qid, pid)] = 1
    if not rows:
        raise DataError(path, None, "no judgements")
    return qrels_table([(q, p, r) for (q, p), r in rows.items()])


def prepare_lotte(src: str | Path, out_dir: str | Path, domain: str, split: str, query_set: str) -> None:
    """Validate one LoTTE domain/split and query set; write corpus.parquet and queries.parquet to `out_dir`."""
    _, corpus, queries, _ = layout_files(find_folder(src, domain, split), query_set)
    corpus_df, queries_df = read_collection(corpus), read_question_file(queries)
    write_parquet(corpus_df, Path(out_dir) / "corpus.parquet")
    write_parquet(queries_df, Path(out_dir) / "queries.parquet")


def prepare_lotte_qrels(
    src: str | Path, domain: str, split: str, query_set: str, corpus: str | Path, queries: str | Path, dest: str | Path
) -> None:
    """Validate the query set's answers against the prepared tables; write them as qrels Parquet."""
    layout, _, _, judged = layout_files(find_folder(src, domain, split), query_set)
    qids, docids = prepared_ids(corpus, queries)
    write_parquet(read_judgements(judged, layout, qids, docids), dest)


def fetch_lotte(out_dir: str | Path, cache_dir: str | Path) -> None:
    """Download the release archive (resumable, md5- and size-checked) into `cache_dir` and unpack its
    `lotte/` folder to `out_dir` atomically."""
    archive = download(LOTTE_URL, Path(cache_dir) / "lotte.tar.gz", md5=LOTTE_MD5, size=LOTTE_SIZE)
    with tempfile.TemporaryDirectory(dir=cache_dir) as scratch:
        unpacked = extract(archive, Path(scratch) / "unpacked")
        root = unpacked / "lotte" if (unpacked / "lotte").is_dir() else unpacked
        with atomic_path(out_dir, is_dir=True) as tmp:
            tmp.rmdir()
            shutil.move(str(root), tmp)
