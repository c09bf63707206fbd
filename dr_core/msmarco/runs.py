"""Runs in the MS MARCO format `qid<TAB>pid<TAB>rank`."""

from __future__ import annotations

from pathlib import Path

from dr_core.atomic import atomic_path
from dr_core.runs import read_trec


def _ranked(candidates: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """Best score first; equal scores keep their given order."""
    return sorted(candidates, key=lambda pair: -pair[1])


def write_msmarco_run(run: dict[str, list[tuple[str, float]]], path: str | Path) -> None:
    """Write the MS MARCO run format `qid<TAB>pid<TAB>rank` (rank 1 = best score), atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for qid, candidates in run.items():
            f.writelines(f"{qid}\t{pid}\t{rank}\n" for rank, (pid, _) in enumerate(_ranked(candidates), start=1))


def trec_to_msmarco_run(run_trec: str | Path, dest: str | Path) -> None:
    """The same ranking in the MS MARCO format `qid<TAB>pid<TAB>rank`."""
    run = read_trec(run_trec)
    ranked = {qid: list(zip(group["docid"], group["score"])) for qid, group in run.groupby("qid", sort=False)}
    write_msmarco_run(ranked, dest)
