"""Runs in the MS MARCO format `qid<TAB>pid<TAB>rank`."""

from __future__ import annotations

from pathlib import Path

from dr_core.atomic import atomic_path
from dr_core.runs import msmarco_line, read_trec, trec_eval_order


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
