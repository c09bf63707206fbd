"""Commands for the choices made on dev: whether to train another round, the selected round and its runs."""

from __future__ import annotations

import argparse
import logging

from dr_core.atomic import write_json
from dr_core.runs import read_trec, write_trec_frame
from dr_core.selection import dev_values, keep_training, select_round

log = logging.getLogger("dr_core")


def _add_round_decision(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("round-decision", help="train another round? (the dev metric of rounds 0..r, ance.rounds' rule)")
    s.add_argument("--metrics", nargs="+", required=True, help="dev metrics JSON of rounds 0..r, in order")
    s.add_argument("--metric", required=True)
    s.add_argument("--max-rounds", type=int, required=True)
    s.add_argument("--patience", type=int, required=True)
    s.add_argument("--min-delta", type=float, required=True)
    s.add_argument("--out", required=True)
    s.set_defaults(func=_round_decision)


def _round_decision(a: argparse.Namespace) -> None:
    values = dev_values(a.metrics, a.metric)
    go = keep_training(values, a.max_rounds, a.patience, a.min_delta)
    log.info("%s on dev by round: %s; train round %d: %s", a.metric, values, len(values), go)
    rule = {"max": a.max_rounds, "patience": a.patience, "min_delta": a.min_delta}
    write_json(
        {"continue": go, "metric": a.metric, "dev": values, "best_round": select_round(values), "rule": rule}, a.out
    )


def _add_select_round(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("select-round", help="the round with the best dev metric (ties to the earlier)")
    s.add_argument("--metrics", nargs="+", required=True, help="dev metrics JSON of rounds 0..R, in order")
    s.add_argument("--metric", required=True)
    s.add_argument("--out", required=True)
    s.set_defaults(func=_select_round)


def _select_round(a: argparse.Namespace) -> None:
    values = dev_values(a.metrics, a.metric)
    chosen = select_round(values)
    log.info("%s on dev by round: %s; selected round %d", a.metric, values, chosen)
    write_json({"round": chosen, "metric": a.metric, "dev": values, "files": a.metrics}, a.out)


def _add_select_run(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("select-run", help="a run file retagged (the selected round's run as system `selected`)")
    for name in ("--run", "--tag", "--out"):
        s.add_argument(name, required=True)
    s.set_defaults(func=_select_run)


def _select_run(a: argparse.Namespace) -> None:
    write_trec_frame(a.out, read_trec(a.run), a.tag)


def register(sub: argparse._SubParsersAction) -> None:
    """Choices on dev: whether to train another round, the selected round and its runs."""
    for add in (_add_round_decision, _add_select_round, _add_select_run):
        add(sub)
