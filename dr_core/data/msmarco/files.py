"""MS MARCO's published files (where each is, its md5 and size when published, what it holds), the raw files
the workflow reads, and their resumable, checked download."""

from __future__ import annotations

import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class MsMarcoFile:
    """A published MS MARCO file: where it is, its md5 and size when published, and what it holds."""

    url: str
    md5: str | None
    contents: str
    member: str | None = None  # path inside the archive at `url`, when the file ships inside one
    size: int | None = None  # bytes

    @property
    def headers(self) -> dict[str, str]:
        """Request headers: Microsoft's Azure storage answers Range requests (resume) only when a recent API
        version is named (microsoft/msmarco#7; ir_datasets sends the same header)."""
        return {"X-Ms-Version": "2019-12-12"} if self.url.startswith(_MARCO) else {}


_MARCO = "https://msmarco.z22.web.core.windows.net/msmarcoranking"  # was msmarco.blob.core.windows.net
_SBERT = "https://sbert.net/datasets"

# md5s and sizes as published by Anserini's MS MARCO passage guide (collectionandqueries.tar.gz) and by
# ir_datasets' downloads.json, whose CI re-verifies them against the live files. RocketQA and
# sentence-transformers publish none, so those downloads are checked for completeness only.
_COLLECTION = dict(md5="31644046b18952c1386cd4564ba2ae69", size=1_057_717_952)

MSMARCO_FILES: dict[str, MsMarcoFile] = {
    "marco.tar.gz": MsMarcoFile(
        "https://rocketqa.bj.bcebos.com/corpus/marco.tar.gz",
        None,
        "RocketQA's MS MARCO passage release: marco/para.txt (pid, text), marco/para.title.txt (pid, title), "
        "train.query.txt and dev.query.txt (qid, text), qrels.train.tsv and qrels.dev.tsv",
    ),
    "collectionandqueries.tar.gz": MsMarcoFile(
        f"{_MARCO}/collectionandqueries.tar.gz",
        contents="official passage collection.tsv (8,841,823 passages), queries.{train,dev,eval}.tsv, "
        "queries.dev.small.tsv, qrels.train.tsv, qrels.dev.small.tsv",
        **_COLLECTION,
    ),
    "qrels.train.tsv": MsMarcoFile(
        f"{_MARCO}/qrels.train.tsv",
        "733fb9fe12d93e497f7289409316eccf",
        "train qrels, TREC format 'qid 0 pid 1' (tab-separated)",
        size=10_589_532,
    ),
    "qidpidtriples.train.full.2.tsv.gz": MsMarcoFile(
        f"{_MARCO}/qidpidtriples.train.full.2.tsv.gz",
        "219083e80a0a751c08b968c2f31a4e0b",
        "~397M training triples 'qid<TAB>pos_pid<TAB>neg_pid' with CRLF line ends",
        size=1_841_693_309,
    ),
    "queries.dev.small.tsv": MsMarcoFile(
        f"{_MARCO}/collectionandqueries.tar.gz",
        contents="the 6,980 dev queries (qid, text) that MRR@10 is reported on",
        member="queries.dev.small.tsv",
        **_COLLECTION,
    ),
    "qrels.dev.small.tsv": MsMarcoFile(
        f"{_MARCO}/collectionandqueries.tar.gz",
        contents="qrels for queries.dev.small.tsv, TREC format 'qid 0 pid 1'",
        member="qrels.dev.small.tsv",
        **_COLLECTION,
    ),
    "msmarco-hard-negatives.jsonl.gz": MsMarcoFile(
        f"{_SBERT}/msmarco-hard-negatives.jsonl.gz",
        None,
        'sentence-transformers hard negatives: {"qid", "pos": [pid], "neg": {system: [pid, ...]}} per line',
    ),
    "cross-encoder-ms-marco-MiniLM-L-6-v2-scores.pkl.gz": MsMarcoFile(
        f"{_SBERT}/cross-encoder-ms-marco-MiniLM-L-6-v2-scores.pkl.gz",
        None,
        "pickled dict qid -> {pid: cross-encoder score} for the pids in msmarco-hard-negatives (int keys)",
    ),
}


# The raw files the workflow reads: name -> (published file, member inside it when it is an archive).
RAW_FILES: dict[str, tuple[str, str | None]] = {
    "para.txt": ("marco.tar.gz", "para.txt"),
    "para.title.txt": ("marco.tar.gz", "para.title.txt"),
    "train.query.txt": ("marco.tar.gz", "train.query.txt"),
    "qrels.train.tsv": ("qrels.train.tsv", None),
    "qidpidtriples.train.full.2.tsv.gz": ("qidpidtriples.train.full.2.tsv.gz", None),
    "queries.dev.small.tsv": ("collectionandqueries.tar.gz", "queries.dev.small.tsv"),
    "qrels.dev.small.tsv": ("collectionandqueries.tar.gz", "qrels.dev.small.tsv"),
    "msmarco-hard-negatives.jsonl.gz": ("msmarco-hard-negatives.jsonl.gz", None),
    "cross-encoder-ms-marco-MiniLM-L-6-v2-scores.pkl.gz": ("cross-encoder-ms-marco-MiniLM-L-6-v2-scores.pkl.gz", None),
}


def fetch_raw_file(name: str, dest: str | Path, archive_dir: str | Path) -> None:
    """Download `name` (resumable, checksummed when published); files inside an archive are taken out of it."""
    # here, not at the top: the Snakefile reads RAW_FILES at every invocation, before any step runs
    from dr_core.atomic import atomic_path
    from dr_core.data.download import download

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
