"""Run files: the one owner of their line formats, score precision and tie order.

A TREC run is `qid Q0 docid rank score tag`, one line per retrieved document, the score written with
`SCORE_DECIMALS` decimals (`trec_line`); an MS MARCO run is `qid<TAB>pid<TAB>rank` (`msmarco_line`). Ties are judged
on the scores as written: every writer that ranks (the dense search, the fusion step, the MS MARCO writer, and
trec_eval's order that evaluation cuts runs by) orders a query's documents by `rank_order`: score descending, then
doc id descending, which is how trec_eval and pytrec_eval rank equal scores. Two writers keep an order they are
given, named where they are: the BM25 run (bm25s's order, `write_trec`) and the reranker (equal cross-encoder
scores keep the first stage's order).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from dr_core.atomic import atomic_path
from dr_core.errors import DataError

SCORE_DECIMALS = 6  # the run file's precision: ties are judged on the scores as written

# trec_line(qid, docid, rank, score, tag) and msmarco_line(qid, docid, rank): one line, with its newline
trec_line = f"{{}} Q0 {{}} {{}} {{:.{SCORE_DECIMALS}f}} {{}}\n".format
msmarco_line = "{}\t{}\t{}\n".format


def round_scores(scores: np.ndarray | pd.Series) -> np.ndarray:
    """Scores (float64) rounded to the run file's precision, as ranking judges them."""
    return np.round(np.asarray(scores, dtype=np.float64), SCORE_DECIMALS)


def tie_keys(ids: np.ndarray) -> np.ndarray:
    """Each row's place in the doc ids' sorted (string) order: the larger key wins a tie."""
    keys = np.empty(len(ids), dtype=np.int64)
    keys[np.argsort(ids, kind="stable")] = np.arange(len(ids))
    return keys


def sorted_codes(values: np.ndarray | pd.Series | Sequence[str]) -> np.ndarray:
    """Each value's place among the distinct values in sorted (string) order; equal values share a code."""
    return np.unique(np.asarray(values, dtype=object), return_inverse=True)[1].reshape(-1)


def rank_order(scores: np.ndarray, keys: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
    """THE tie order: the indices that sort the rows (along the last axis) by `groups` ascending when given, then
    score descending, then tie key descending (`tie_keys`/`sorted_codes` of the doc ids: doc id descending); rows
    equal in all three keep their order. Writers pass the scores as written (`round_scores`)."""
    by = (-keys, -scores) if groups is None else (-keys, -scores, groups)
    return np.lexsort(by, axis=-1)


def rank_frame(qids: pd.Series, docids: pd.Series, scores: pd.Series) -> pd.DataFrame:
    """A run (qid, docid, rank, score) of scored pairs: qids ascending, each query's documents in `rank_order` of
    their scores rounded to the file's precision, ranked 1..n."""
    rounded = round_scores(scores)
    order = rank_order(rounded, sorted_codes(docids), sorted_codes(qids))
    out = pd.DataFrame({"qid": np.asarray(qids)[order], "docid": np.asarray(docids)[order], "score": rounded[order]})
    out["rank"] = out.groupby("qid", sort=False).cumcount() + 1
    return out[["qid", "docid", "rank", "score"]]


def write_trec(dest: str | Path, qids: Sequence[str], docids: np.ndarray, scores: np.ndarray, tag: str) -> None:
    """Write a ranking in the order given (BM25's: bm25s ranks equal scores its own way, not by `rank_order`):
    row i of `docids`/`scores` (sorted best first) belongs to `qids[i]`; '' pads short rows."""
    with atomic_path(dest) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for qid, row_ids, row_scores in zip(qids, docids, scores):
            lines = [
                trec_line(qid, d, rank, s, tag)
                for rank, (d, s) in enumerate(zip(row_ids, row_scores), start=1)
                if d != ""
            ]
            f.writelines(lines)


def write_trec_frame(dest: str | Path, run: pd.DataFrame, tag: str) -> None:
    """Write a run held as a DataFrame (qid, docid, rank, score), in its row order, atomically."""
    with atomic_path(dest) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.writelines(map(trec_line, run["qid"], run["docid"], run["rank"], run["score"], [tag] * len(run)))


def read_trec(path: str | Path, tags: bool = False) -> pd.DataFrame:
    """Read a TREC run into a DataFrame (qid, docid, rank, score, and with `tags` the tag column), sorted by qid
    then rank. A line without 6 fields or with a non-numeric rank or score is a DataError naming its line."""
    path = Path(path)
    try:
        df = pd.read_csv(path, sep=r"\s+", header=None, dtype=str, names=range(6), on_bad_lines="error")
    except pd.errors.ParserError as e:
        line = re.search(r"fields in line (\d+)", str(e))
        raise DataError(path, line and int(line[1]), "more than 6 fields: qid Q0 docid rank score tag") from None
    bad = df[5].isna() | df[0].isna()
    if bad.any():
        raise DataError(path, _line_of(path, bad), "expected 6 fields: qid Q0 docid rank score tag")
    out = pd.DataFrame({"qid": df[0], "docid": df[2]})
    try:
        out["rank"] = df[3].astype(np.int64)
        out["score"] = df[4].astype(np.float64)
    except ValueError as e:
        for column, field, convert in (("rank", 3, int), ("score", 4, float)):
            bad = ~df[field].map(lambda text, convert=convert: _converts(text, convert))
            if bad.any():
                line = _line_of(path, bad)
                raise DataError(path, line, f"{column} {df[field][bad].iloc[0]!r} is not a number") from None
        raise DataError(path, None, f"non-numeric rank or score ({e})") from None
    if tags:
        out["tag"] = df[5]
    return out.sort_values(["qid", "rank"], kind="stable", ignore_index=True)


def _converts(text: str, convert: type) -> bool:
    try:
        convert(text)
    except ValueError:
        return False
    return True


def _line_of(path: Path, bad: pd.Series) -> int:
    """The 1-based line of the first True row of `bad` (rows as read_csv reads them: blank lines skipped)."""
    row = int(np.flatnonzero(bad.to_numpy())[0])
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if line.strip():
                if row == 0:
                    return lineno
                row -= 1
    return row + 1


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
    """(docid, score) pairs in trec_eval's ranking, `rank_order` of the scores as given: score descending, equal
    scores by docid descending."""
    pairs = list(scores.items()) if isinstance(scores, dict) else list(scores)
    if not pairs:
        return []
    values = np.array([s for _, s in pairs], dtype=np.float64)
    return [pairs[i] for i in rank_order(values, sorted_codes([d for d, _ in pairs]))]


def write_msmarco_run(run: dict[str, list[tuple[str, float]]], path: str | Path) -> None:
    """Write the MS MARCO run format `qid<TAB>pid<TAB>rank`, atomically: rank 1 is the best score, and equal
    scores are ranked as trec_eval ranks them (by pid, descending), so its MRR@10 is the evaluation's."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for qid, candidates in run.items():
            f.writelines(msmarco_line(qid, pid, rank) for rank, (pid, _) in enumerate(trec_eval_order(candidates), 1))


def trec_to_msmarco_run(run_trec: str | Path, dest: str | Path) -> None:
    """The same ranking in the MS MARCO format `qid<TAB>pid<TAB>rank`."""
    run = read_trec(run_trec)
    ranked = {qid: list(zip(group["docid"], group["score"])) for qid, group in run.groupby("qid", sort=False)}
    write_msmarco_run(ranked, dest)
