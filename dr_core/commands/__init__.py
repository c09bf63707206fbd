"""The `python -m dr_core` commands, one module per stage: each command's parser (`_add_<command>`) beside its
handler, and each module's `register(subparsers)` adding its commands. dr_core.fingerprint finds a command's
handler here (`add_parser("name", ...)` ... `set_defaults(func=handler)`) and hashes the code it runs."""

from __future__ import annotations

import argparse


def given(a: argparse.Namespace, *names: str) -> list:
    """The values of a step's input flags `names`; a ValueError naming each one missing."""
    missing = ["--" + name.replace("_", "-") for name in names if not getattr(a, name)]
    if missing:
        raise ValueError(f"{a.command} {a.step} needs {' and '.join(missing)}")
    return [getattr(a, name) for name in names]
