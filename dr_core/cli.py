"""Command-line entry points, one per workflow step (`python -m dr_core <step> ...`): the top-level parser and
the dispatch. Each command's parser and handler sit together in its stage's module of dr_core.commands."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from dr_core.atomic import write_provenance
from dr_core.commands import data, evaluation, msmarco, negatives, reranker, retrieval, selection, sharing, training
from dr_core.errors import DataError, MissingPathError, WriteError
from dr_core.fingerprint import step_of
from dr_core.settings import SettingsParser

log = logging.getLogger("dr_core")
STAGES = (data, msmarco, negatives, training, reranker, retrieval, evaluation, selection, sharing)


def build_parser() -> argparse.ArgumentParser:
    """`dr_core <command> ...`: a command per workflow step, grouped by stage; every setting is a flag."""
    p = argparse.ArgumentParser(prog="dr_core", description=__doc__)
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    sub = p.add_subparsers(dest="command", required=True, parser_class=SettingsParser)
    for stage in STAGES:
        stage.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if args.threads:
        import torch  # only when asked: most commands never load torch

        torch.set_num_threads(args.threads)
    try:
        args.func(args)
        _record_provenance(args)
    except WriteError as e:  # a full disk, a quota, a permission: one line naming the output, no traceback
        log.error("%s", e)
        return 1
    except (DataError, ValueError, FileNotFoundError) as e:
        log.error("%s", e, exc_info=not isinstance(e, (DataError, MissingPathError)))
        return 1
    return 0


def _record_provenance(args: argparse.Namespace) -> None:
    """Write the step's arguments (settings, seeds) and the library version beside its main output."""
    target = next((getattr(args, k) for k in ("out", "out_dir", "emb_out") if getattr(args, k, None)), None)
    if target is not None and Path(target).exists():
        params = {k: v for k, v in vars(args).items() if k != "func"}
        write_provenance(target, params, step_of(args.func))
