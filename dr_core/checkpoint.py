"""Checkpoints of a training run: the loop's state and every random stream, resumed only by the same run.

A checkpoint records a fingerprint (settings, world size, total steps and a digest of the inputs); a run
resumes it only when its own fingerprint is equal, so a checkpoint left by a run whose settings or inputs
have changed since (new negatives, a retrained previous round) is not resumed. Such a checkpoint, and one that
does not load (truncated by a full disk, not a torch file, keys missing), is moved aside with a warning naming
it and why (the checkpoint folder renamed `<folder>.damaged-<time>`), and the run starts over from step 0: a
bad checkpoint never traps the reruns of a step.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dr_core.atomic import atomic_path
from dr_core.textio import hash_file

log = logging.getLogger(__name__)

STATE_FILE = "state.pt"
STATE_KEYS = ("fingerprint", "rng")  # what every checkpoint holds beside its loop's state


def seed_all(seed: int) -> None:
    """Seed Python's, numpy's and torch's global random streams."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Every global random stream (Python, numpy, torch CPU and CUDA)."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def inputs_digest(init_model: str | Path, data: Any) -> str:
    """sha256 of what a run trains from: the files of the initial model folder and `data` (JSON-serialisable:
    the training groups, teacher scores, clusters, ...)."""
    h = hashlib.sha256()
    for path in sorted(p for p in Path(init_model).rglob("*") if p.is_file()):
        h.update(str(path.relative_to(init_model)).encode() + b"\0")
        hash_file(path, h)
    h.update(json.dumps(data, sort_keys=True).encode())
    return h.hexdigest()


class Checkpointer:
    """Saves and restores a state dict in `<directory>/state.pt`, tagged with `fingerprint`. Only the main
    process (`is_main`) moves a bad checkpoint aside; the others just do not resume it."""

    def __init__(self, directory: str | Path, fingerprint: dict, is_main: bool = True) -> None:
        self.directory = Path(directory)
        self.fingerprint = fingerprint
        self.is_main = is_main

    @property
    def path(self) -> Path:
        return self.directory / STATE_FILE

    def save(self, state: dict) -> None:
        """Write `state`, the random streams and the fingerprint atomically."""
        # through a Python file, so that a full disk is an OSError (dr_core.atomic names it), not torch's
        # 'unexpected pos' RuntimeError
        with atomic_path(self.path) as tmp, open(tmp, "wb") as f:
            torch.save({**state, "rng": rng_state(), "fingerprint": self.fingerprint}, f)

    def load(self, device: torch.device, keys: tuple[str, ...] = ()) -> dict | None:
        """The saved state (holding `keys` too) with the random streams restored, or None: no checkpoint, or one
        that is moved aside (`set_aside`) because it does not load, lacks a key or is another run's."""
        if not self.path.exists():
            return None
        try:
            state = torch.load(self.path, map_location=device, weights_only=False)
        except (MemoryError, PermissionError, torch.cuda.OutOfMemoryError):
            raise  # the machine's trouble, not the file's
        except Exception as e:
            self.set_aside(f"it does not load ({describe(e)})")
            return None
        if not isinstance(state, dict):
            self.set_aside(f"it holds a {type(state).__name__}, not a checkpoint's dict")
            return None
        missing = [k for k in (*STATE_KEYS, *keys) if k not in state]
        if missing:
            self.set_aside(f"it lacks {', '.join(missing)}")
            return None
        if state["fingerprint"] != self.fingerprint:
            self.set_aside("it was written with other settings or inputs")
            return None
        before = rng_state()
        try:
            set_rng_state(state["rng"])
        except Exception as e:
            set_rng_state(before)
            self.set_aside(f"its random streams do not restore ({describe(e)})")
            return None
        return state

    def set_aside(self, reason: str) -> Path | None:
        """Rename the checkpoint folder to `<folder>.damaged-<time>` (beside it, kept for a look; delete it at
        will), warning with `reason`; the run starts over. The new name, or None (not the main process, or the
        rename failed: the next checkpoint then replaces the file)."""
        if not self.is_main:
            return None
        stamp = time.strftime("%Y%m%d-%H%M%S")
        aside = self.directory.with_name(f"{self.directory.name}.damaged-{stamp}")
        n = 1
        while aside.exists():
            aside, n = self.directory.with_name(f"{self.directory.name}.damaged-{stamp}-{n}"), n + 1
        try:
            self.directory.rename(aside)
        except OSError as e:
            log.warning(
                "checkpoint %s not resumed: %s; could not move it aside (%s); starting over from step 0",
                self.path,
                reason,
                describe(e),
            )
            return None
        log.warning(
            "checkpoint %s not resumed: %s; moved aside to %s; starting over from step 0",
            self.path,
            reason,
            aside / STATE_FILE,
        )
        return aside

    def clear(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def describe(e: BaseException) -> str:
    """An exception in one short line: its type and the first line of its message."""
    lines = str(e).strip().splitlines()
    first = lines[0] if lines else ""
    first = first if len(first) <= 200 else first[:197] + "..."
    return f"{type(e).__name__}: {first}" if first else type(e).__name__
