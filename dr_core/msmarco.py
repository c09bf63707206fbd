"""MS MARCO passage data: the seed's title join and negatives file (byte for byte), readers, runs and MRR@10.

Byte equality with the seed's shell commands is defined for `LC_ALL=C` (coreutils `sort`/`join`) and for
Debian's default awk (mawk 1.3.4) as well as gawk 5; see the docstrings of `join_titles` and
`negatives_from_triples` for the exact semantics reproduced and the inputs that are refused instead.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import pickle
import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import numpy as np

from dr_core.atomic import atomic_path
from dr_core.errors import DataError
from dr_core.textio import json_records, open_binary, text_lines


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


# ---------------------------------------------------------------------------------------------------------------
# The seed's title join: join -t TAB -e '' -a 1 -o 1.1 2.2 1.2 <(sort -k1,1 para) <(sort -k1,1 titles) | sort -k1,1 -n

_SORT_N_PREFIX = re.compile(rb"-?\d*(?:\.\d*)?")


def _sort_n_value(pid: bytes) -> int | Decimal:
    """The number `sort -n` reads at the start of `pid` (C locale: no thousands separator; none reads as 0)."""
    if pid.isdigit():
        return int(pid)
    number = _SORT_N_PREFIX.match(pid).group()
    return Decimal(number.decode()) if number.strip(b"-.") else 0


def _join_fields(line: bytes, path: Path, lineno: int) -> tuple[bytes, bytes]:
    """join's fields 1 and 2 of a line (TAB-separated; '' when absent). Empty ids and ids with a space are
    refused: on them `sort -k1,1` (blank-separated) and `join -t TAB` disagree about the key."""
    pid, _, rest = line.partition(b"\t")
    if not pid or b" " in pid:
        raise DataError(path, lineno, f"id {pid!r} is empty or holds a space: the seed's sort and join disagree on it")
    return pid, rest.partition(b"\t")[0]


def _line_chunks(path: Path, chunk_bytes: int) -> Iterator[list[bytes]]:
    """The lines of `path` without their LF, about `chunk_bytes` at a time; a last line without LF counts."""
    with open(path, "rb") as f:
        carry = b""
        while block := f.read(chunk_bytes):
            lines = (carry + block).split(b"\n")
            carry = lines.pop()
            if lines:
                yield lines
        if carry:
            yield [carry]


def _read_titles(path: Path, chunk_bytes: int) -> tuple[dict[bytes, bytes], dict[bytes, list[bytes]]]:
    """pid -> title (join's field 2) for ids seen once, and pid -> titles for ids seen more than once."""
    titles: dict[bytes, bytes] = {}
    repeated: dict[bytes, list[bytes]] = {}
    lineno = 0
    for lines in _line_chunks(path, chunk_bytes):
        for line in lines:
            lineno += 1
            pid, title = _join_fields(line, path, lineno)
            if pid in titles:
                repeated[pid] = [titles.pop(pid), title]
            elif pid in repeated:
                repeated[pid].append(title)
            else:
                titles[pid] = title
    return titles, repeated


def _merge_key(line: bytes) -> tuple[int | Decimal, bytes]:
    """Order of `sort -k1,1 -n` in the C locale: numeric id, then the whole line (no -s, so ties use it)."""
    body = line[:-1]
    return _sort_n_value(body.partition(b"\t")[0]), body


def join_titles(
    para_txt: str | Path, para_title_txt: str | Path, out_tsv: str | Path, *, chunk_bytes: int = 64 << 20
) -> None:
    """Write `pid<TAB>title<TAB>text` lines equal byte for byte to the seed's sort/join/sort pipeline (LC_ALL=C).

    Reproduced: only join's field 2 of each file is kept (text after a further tab is dropped); a missing title
    is empty; a pid repeated in either file yields every pairing; CR bytes are data (a CRLF title row gives
    'title\\r', and a CRLF row with no tab has the id '123\\r', which matches no passage); a missing final
    newline is added; output is ordered by the number `sort -n` reads from the id, ties by the whole line.
    Refused with `DataError`: empty ids and ids with a space, where `sort -k1,1` and `join -t TAB` disagree.
    Memory: the titles as a dict plus one chunk of passages (1.7 GB peak RSS for 8.8M passages, 8M titles;
    the seed's pipeline peaks at 4.4 GB); chunks are sorted (a no-op for the usual pid-ordered file), written
    one after another and merged only if they overlap.
    """
    para_txt, para_title_txt = Path(para_txt), Path(para_title_txt)
    titles, repeated = _read_titles(para_title_txt, chunk_bytes)
    runs: list[tuple[int, int, tuple, tuple]] = []  # (byte offset, lines, first key, last key) per sorted chunk
    with atomic_path(out_tsv) as tmp:
        with open(tmp, "wb") as out:
            lineno = 0
            for lines in _line_chunks(para_txt, chunk_bytes):
                numbers, bodies = [], []
                for line in lines:
                    lineno += 1
                    pid, text = _join_fields(line, para_txt, lineno)
                    number = int(pid) if pid.isdigit() else _sort_n_value(pid)
                    title = titles.get(pid)
                    if title is not None:
                        numbers.append(number)
                        bodies.append(b"\t".join((pid, title, text)))
                    elif pid in repeated:
                        for title in repeated[pid]:
                            numbers.append(number)
                            bodies.append(b"\t".join((pid, title, text)))
                    else:
                        numbers.append(number)
                        bodies.append(pid + b"\t\t" + text)
                if numbers != sorted(numbers) or len(set(numbers)) < len(numbers):
                    keyed = sorted(zip(numbers, bodies))
                    numbers, bodies = [n for n, _ in keyed], [b for _, b in keyed]
                runs.append((out.tell(), len(bodies), (numbers[0], bodies[0]), (numbers[-1], bodies[-1])))
                out.write(b"\n".join(bodies))
                out.write(b"\n")
        if any(prev[3] > nxt[2] for prev, nxt in itertools.pairwise(runs)):
            with atomic_path(tmp) as merged:
                _merge_runs(tmp, [(offset, count) for offset, count, _, _ in runs], merged)


def _merge_runs(path: Path, runs: list[tuple[int, int]], dest: Path) -> None:
    """Merge the sorted runs stored in `path`, each given as (byte offset, number of lines), into `dest`."""
    with contextlib.ExitStack() as stack:
        readers = []
        for offset, count in runs:
            f = stack.enter_context(open(path, "rb"))
            f.seek(offset)
            readers.append(itertools.islice(f, count))
        out = stack.enter_context(open(dest, "wb"))
        out.writelines(heapq.merge(*readers, key=_merge_key))


# ---------------------------------------------------------------------------------------------------------------
# The seed's negatives file:
# awk -v RS='\r\n' '$1==last {printf ",%s",$3; next} NR>1 {print "";} {last=$1; printf "%s\t%s",$1,$3;} END{print "";}'

_AWK_NUMBER = re.compile(rb"[ \t]*[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?[ \t]*")
_AWK_FS = re.compile(rb"[ \t]+")


def _awk_number(field: bytes) -> float | None:
    """The value of a field that looks like a decimal number to awk (a 'strnum'), else None."""
    return float(field) if _AWK_NUMBER.fullmatch(field) else None


def _awk_equal(field: bytes, last: bytes | None) -> bool:
    """awk's `$1==last`: numeric when both look numeric (an unset `last` is 0 and ""), else as strings."""
    number = _awk_number(field)
    if last is None:
        return number == 0.0 if number is not None else field == b""
    last_number = _awk_number(last)
    if number is not None and last_number is not None:
        return number == last_number
    return field == last


@dataclass
class _AwkState:
    """What the awk program carries from one record to the next."""

    last: bytes | None = None
    records: int = 0  # NR after the last record read


def _lf_error(path: Path, lineno: int) -> DataError:
    return DataError(
        path,
        lineno,
        "line ends with LF, not CRLF: the seed's awk (RS='\\r\\n') would read the rest of the file as one "
        "record and write a single line; convert the file to CRLF line ends first",
    )


def _triples_general(records: bytes, state: _AwkState, path: Path) -> bytes:
    """Run the awk program on CRLF-terminated records, one record at a time."""
    pieces = []
    for record in records.split(b"\r\n")[:-1]:
        if b"\n" in record:
            raise _lf_error(path, state.records + 1)
        stripped = record.strip(b" \t")
        fields = _AWK_FS.split(stripped) if stripped else []
        first = fields[0] if fields else b""
        third = fields[2] if len(fields) > 2 else b""
        if _awk_equal(first, state.last):
            pieces += [b",", third]
        else:
            if state.records:
                pieces.append(b"\n")
            state.last = first
            pieces += [first, b"\t", third]
        state.records += 1
    return b"".join(pieces)


_TRIPLE_SEPARATORS = np.array([9, 9, 13, 10], np.uint8)  # TAB, TAB, CR, LF: the only bytes below 14 in a row


def _triples_vectorised(records: bytes, state: _AwkState) -> bytes | None:
    """The same on records that are all `qid<TAB>pos<TAB>neg` with non-empty fields free of blanks and control
    bytes, and canonical qids of up to 15 digits (where awk's numeric `==` is plain equality); None otherwise."""
    a = np.frombuffer(records, np.uint8)
    seps = np.flatnonzero(a < 14)
    if len(seps) % 4 or (a == 32).any():
        return None
    seps = seps.reshape(-1, 4)
    tab1, tab2, cr, lf = seps.T
    starts = np.concatenate(([0], lf[:-1] + 1))
    if not (
        (a[seps] == _TRIPLE_SEPARATORS).all()
        and (lf == cr + 1).all()
        and (tab1 > starts).all()
        and (tab2 > tab1 + 1).all()
        and (cr > tab2 + 1).all()
    ):
        return None
    lengths = tab1 - starts
    if lengths.max() > 15 or ((a[starts] == 48) & (lengths > 1)).any():
        return None
    qids = np.zeros(len(starts), np.int64)
    for col in range(int(lengths.max())):
        inside = col < lengths
        digit = a[np.where(inside, starts + col, 0)].astype(np.int64) - 48
        if ((digit < 0) | (digit > 9))[inside].any():
            return None
        qids = np.where(inside, qids * 10 + digit, qids)
    group_start = np.empty(len(starts), bool)
    group_start[0] = not _awk_equal(records[: lengths[0]], state.last)
    group_start[1:] = qids[1:] != qids[:-1]
    # Per record keep 'qid<TAB>' (group starts only), drop 'pos<TAB>', keep 'neg' and the CR, which becomes
    # the separator before the next record ('\n' before a group start, ',' otherwise), drop the LF.
    runs = np.stack([tab1 + 1 - starts, tab2 - tab1, cr + 1 - (tab2 + 1), np.ones_like(cr)], axis=1)
    kept = np.zeros_like(runs, bool)
    kept[:, 0], kept[:, 2] = group_start, True
    out = a.copy()
    out[cr[:-1]] = np.where(group_start[1:], ord("\n"), ord(","))
    body = out[np.repeat(kept.ravel(), runs.ravel())].tobytes()[:-1]  # without the last record's CR
    if group_start[0]:
        prefix = b"\n" if state.records else b""
    else:
        prefix = b","
    if group_start.any():
        last_start = int(np.flatnonzero(group_start)[-1])
        state.last = records[starts[last_start] : tab1[last_start]]
    state.records += len(starts)
    return prefix + body


def negatives_from_triples(triples_tsv: str | Path, out_tsv: str | Path, *, chunk_bytes: int = 16 << 20) -> None:
    """Write `qid<TAB>pid,pid,...` (each run of consecutive rows with one qid, their 3rd fields) equal byte for
    byte to the seed's awk with RS='\\r\\n'; plain or .gz input, streamed in chunks.

    Reproduced: records end at CRLF; fields split on runs of blanks; a qid that repeats after another qid
    starts a new line; qids compare as numbers when both look numeric ('07' equals '7') and an unset `last`
    equals '0' and '' (so a file starting with qid 0 starts with ','); missing fields are empty.
    Refused with `DataError`: LF line ends, where the awk reads the rest of the file as one record.
    Tested against mawk 1.3.4 (Debian's default awk) and gawk 5.2. The two disagree with each other only on
    hex-looking qids (mawk reads '0x10' as 16) and on a qid ending in a lone CR (gawk reads '8\\r' as 8); this
    function follows POSIX decimal numbers there, so it matches gawk on the first and mawk on the second.
    """
    path = Path(triples_tsv)
    state = _AwkState()
    with open_binary(path) as src, atomic_path(out_tsv) as tmp, open(tmp, "wb") as out:
        carry = b""
        while block := src.read(chunk_bytes):
            buf = carry + block
            cut = buf.rfind(b"\r\n") + 2
            if cut == 1:
                if b"\n" in buf:
                    raise _lf_error(path, state.records + 1)
                carry = buf
                continue
            records, carry = buf[:cut], buf[cut:]
            converted = _triples_vectorised(records, state)
            out.write(converted if converted is not None else _triples_general(records, state, path))
        if carry:
            out.write(_triples_general(carry + b"\r\n", state, path))
        out.write(b"\n")


# ---------------------------------------------------------------------------------------------------------------
# Readers


def _add_once(out: dict[str, list[str]], qid: str, pids: list[str], path: Path, lineno: int) -> None:
    if qid in out:
        raise DataError(path, lineno, f"duplicate query id '{qid}'")
    out[qid] = pids


def read_st_hard_negatives(
    path: str | Path, systems: list[str] | None = None, max_per_system: int | None = None
) -> dict[str, list[str]]:
    """qid -> negative pids from sentence-transformers' `msmarco-hard-negatives.jsonl.gz`.

    Takes the first `max_per_system` pids of each system in `systems` (default: every system, in file order),
    in that order, leaving out repeats and the query's positives.
    """
    path = Path(path)
    out: dict[str, list[str]] = {}
    for lineno, record in json_records(path):
        neg = record.get("neg")
        if "qid" not in record or not isinstance(neg, dict) or not isinstance(record.get("pos", []), list):
            raise DataError(path, lineno, 'expected {"qid": .., "pos": [..], "neg": {system: [..]}}')
        seen = {str(p) for p in record.get("pos", [])}
        pids = []
        for system in systems if systems is not None else list(neg):
            ranked = neg.get(system, [])
            if not isinstance(ranked, list):
                raise DataError(path, lineno, f"negatives of system '{system}' are not a list")
            for pid in map(str, ranked[:max_per_system]):
                if pid not in seen:
                    seen.add(pid)
                    pids.append(pid)
        _add_once(out, str(record["qid"]), pids, path, lineno)
    return out


def read_tevatron_groups(path: str | Path, field: str = "negative_passages") -> dict[str, list[str]]:
    """qid -> docids of `field` ('negative_passages' or 'positive_passages') from a Tevatron train jsonl.

    The key is `query_id`, or the query text where a file has no ids.
    """
    path = Path(path)
    out: dict[str, list[str]] = {}
    for lineno, record in json_records(path):
        qid = record.get("query_id", record.get("query"))
        passages = record.get(field)
        if qid is None or not isinstance(passages, list):
            raise DataError(path, lineno, f"expected 'query_id' (or 'query') and a list '{field}'")
        if not all(isinstance(p, dict) and "docid" in p for p in passages):
            raise DataError(path, lineno, f"every entry of '{field}' needs a 'docid'")
        _add_once(out, str(qid), [str(p["docid"]) for p in passages], path, lineno)
    return out


def read_ce_scores(path: str | Path, qids: Collection[str] | None = None) -> dict[str, dict[str, float]]:
    """qid -> {pid: score} from sentence-transformers' cross-encoder scores pickle (.pkl.gz).

    Unpickling runs code from the file: read only files from the publisher. `qids` keeps memory down by
    converting just those queries.
    """
    path = Path(path)
    try:
        with open_binary(path) as f:
            scores = pickle.load(f)
    except (pickle.UnpicklingError, EOFError, OSError) as e:
        raise DataError(path, None, f"not a readable pickle ({e})") from None
    if not isinstance(scores, dict):
        raise DataError(path, None, f"expected a dict qid -> {{pid: score}}, got {type(scores).__name__}")
    wanted = None if qids is None else set(qids)
    out: dict[str, dict[str, float]] = {}
    for qid in list(scores):
        by_pid = scores.pop(qid)
        if wanted is not None and str(qid) not in wanted:
            continue
        if not isinstance(by_pid, dict):
            raise DataError(path, None, f"scores of query '{qid}' are not a dict pid -> score")
        try:
            out[str(qid)] = {str(pid): float(score) for pid, score in by_pid.items()}
        except (TypeError, ValueError):
            raise DataError(path, None, f"non-numeric score for query '{qid}'") from None
    return out


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


# ---------------------------------------------------------------------------------------------------------------
# Runs and the official metric


def _ranked(candidates: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """Best score first; equal scores keep their given order."""
    return sorted(candidates, key=lambda pair: -pair[1])


def write_msmarco_run(run: dict[str, list[tuple[str, float]]], path: str | Path) -> None:
    """Write the MS MARCO run format `qid<TAB>pid<TAB>rank` (rank 1 = best score), atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for qid, candidates in run.items():
            f.writelines(f"{qid}\t{pid}\t{rank}\n" for rank, (pid, _) in enumerate(_ranked(candidates), start=1))


def mrr_at_10(run: dict[str, list[tuple[str, float]]], qrels: dict[str, dict[str, int]]) -> float:
    """MRR@10 as the official MS MARCO eval computes it: 1/rank of the first relevant pid (rel > 0) within the
    top 10, averaged over every query in `qrels`; a query missing from `run` scores 0."""
    if not qrels:
        raise ValueError("qrels is empty")
    total = 0.0
    for qid, judged in qrels.items():
        relevant = {pid for pid, rel in judged.items() if rel > 0}
        for rank, (pid, _) in enumerate(_ranked(run.get(qid, []))[:10], start=1):
            if pid in relevant:
                total += 1.0 / rank
                break
    return total / len(qrels)
