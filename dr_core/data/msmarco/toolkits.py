"""Files other toolkits publish for MS MARCO: sentence-transformers' hard negatives and cross-encoder scores,
Tevatron's train groups; and the round-1 negatives file (`negatives.file`) in any of the formats read here."""

from __future__ import annotations

import pickle
import re
from collections.abc import Collection
from pathlib import Path

from dr_core.data.formats import read_negatives
from dr_core.data.tevatron import read_groups
from dr_core.errors import DataError
from dr_core.textio import json_records, open_binary


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
    """qid -> docids of `field` ('negative_passages' or 'positive_passages') of Tevatron's query groups (a
    train .jsonl, or any source `dr_core.data.tevatron.read_groups` reads)."""
    column = {"negative_passages": "negatives", "positive_passages": "positives"}[field]
    groups = read_groups(str(path))
    return dict(zip(groups["qid"].to_pylist(), groups[column].to_pylist()))


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


def read_negatives_file(path: str | Path) -> dict[str, list[str]]:
    """qid -> negative pids from a given negatives file (`negatives.file`), told apart by name and first record:
    `*.jsonl[.gz]` holding Tevatron groups (`negative_passages`) or sentence-transformers' hard negatives
    (every system's pids, positives left out); anything else is `qid<TAB>pid,pid,...`."""
    path = Path(path)
    if not re.search(r"\.jsonl(\.gz)?$", path.name):
        return read_negatives(path)
    _, first = next(iter(json_records(path)), (None, {}))
    if isinstance(first, dict) and "negative_passages" in first:
        return read_tevatron_groups(path)
    return read_st_hard_negatives(path)
