"""TREC run files: `qid Q0 docid rank score tag`, one line per retrieved document."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from dr_core.atomic import atomic_path
from dr_core.errors import DataError


def write_trec(dest: str | Path, qids: Sequence[str], docids: np.ndarray, scores: np.ndarray, tag: str) -> None:
    """Write a ranking: row i of `docids`/`scores` (sorted best first) belongs to `qids[i]`; '' pads short rows."""
    with atomic_path(dest) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for qid, row_ids, row_scores in zip(qids, docids, scores):
            lines = [
                f"{qid} Q0 {d} {rank} {s:.6f} {tag}\n"
                for rank, (d, s) in enumerate(zip(row_ids, row_scores), start=1)
                if d != ""
            ]
            f.writelines(lines)


def write_trec_frame(dest: str | Path, run: pd.DataFrame, tag: str) -> None:
    """Write a run held as a DataFrame (qid, docid, rank, score), in its row order, atomically."""
    with atomic_path(dest) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.writelines(
            f"{q} Q0 {d} {r} {s:.6f} {tag}\n" for q, d, r, s in zip(run["qid"], run["docid"], run["rank"], run["score"])
        )


def read_trec(path: str | Path) -> pd.DataFrame:
    """Read a TREC run into a DataFrame (qid, docid, rank, score), sorted by qid then rank."""
    path = Path(path)
    try:
        df = pd.read_csv(path, sep=r"\s+", header=None, dtype=str, names=range(6), on_bad_lines="error")
    except pd.errors.ParserError as e:
        raise DataError(path, None, f"malformed run file ({e})") from None
    bad = df[5].isna() | df[0].isna()
    if bad.any():
        line = int(np.flatnonzero(bad.to_numpy())[0]) + 1
        raise DataError(path, line, "expected 6 fields: qid Q0 docid rank score tag")
    out = pd.DataFrame({"qid": df[0], "docid": df[2]})
    try:
        out["rank"] = df[3].astype(np.int64)
        out["score"] = df[4].astype(np.float64)
    except ValueError as e:
        raise DataError(path, None, f"non-numeric rank or score ({e})") from None
    return out.sort_values(["qid", "rank"], kind="stable", ignore_index=True)


def iter_run(path: str | Path) -> Iterator[tuple[str, list[str], list[int]]]:
    """(qid, docids, ranks) of each query of a run, in rank order, read line by line: memory is one query's lines.
    The run must be grouped by query, as every run this workflow writes is."""
    for qid, docs, ranks, _ in iter_run_scores(path):
        yield qid, docs, ranks


def iter_run_scores(path: str | Path) -> Iterator[tuple[str, list[str], list[int], list[float]]]:
    """(qid, docids, ranks, scores) of each query of a run, in rank order, as `iter_run` reads it."""
    path, seen = Path(path), set()
    qid, docs, ranks, scores = None, [], [], []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 6 or not fields[3].lstrip("-").isdigit():
                raise DataError(path, lineno, "expected 6 fields: qid Q0 docid rank score tag")
            if fields[0] != qid:
                if qid is not None:
                    yield _by_rank(qid, docs, ranks, scores)
                if fields[0] in seen:
                    raise DataError(path, lineno, f"query '{fields[0]}' appears again after other queries")
                qid, docs, ranks, scores = fields[0], [], [], []
                seen.add(qid)
            docs.append(fields[2])
            ranks.append(int(fields[3]))
            try:
                scores.append(float(fields[4]))
            except ValueError:
                raise DataError(path, lineno, f"score {fields[4]!r} is not a number") from None
    if qid is not None:
        yield _by_rank(qid, docs, ranks, scores)


def _by_rank(
    qid: str, docs: list[str], ranks: list[int], scores: list[float]
) -> tuple[str, list[str], list[int], list[float]]:
    order = sorted(range(len(ranks)), key=ranks.__getitem__)
    return qid, [docs[i] for i in order], [ranks[i] for i in order], [scores[i] for i in order]


def run_to_dict(run: pd.DataFrame) -> dict[str, dict[str, float]]:
    """A run as pytrec_eval wants it: qid -> {docid: score}."""
    out: dict[str, dict[str, float]] = {}
    for qid, docid, score in zip(run["qid"], run["docid"], run["score"]):
        out.setdefault(qid, {})[docid] = float(score)
    return out


def trec_eval_order(scores: dict[str, float] | list[tuple[str, float]]) -> list[tuple[str, float]]:
    """(docid, score) pairs in trec_eval's ranking: score descending, equal scores by docid descending."""
    pairs = sorted(scores.items() if isinstance(scores, dict) else scores, key=lambda pair: pair[0], reverse=True)
    pairs.sort(key=lambda pair: -pair[1])
    return pairs
