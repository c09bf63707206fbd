"""Checkpoints of a training run: the loop's state and every random stream, resumed only by the same run.

A checkpoint records a fingerprint (settings, world size, total steps and a digest of the inputs); a run
resumes it only when its own fingerprint is equal, so a checkpoint left by a run whose settings or inputs
have changed since (new negatives, a retrained previous round) is ignored, with a warning.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dr_core.atomic import atomic_path
from dr_core.textio import hash_file

log = logging.getLogger(__name__)

STATE_FILE = "state.pt"


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
    """Saves and restores a state dict in `<directory>/state.pt`, tagged with `fingerprint`."""

    def __init__(self, directory: str | Path, fingerprint: dict) -> None:
        self.directory = Path(directory)
        self.fingerprint = fingerprint

    @property
    def path(self) -> Path:
        return self.directory / STATE_FILE

    def save(self, state: dict) -> None:
        """Write `state`, the random streams and the fingerprint atomically."""
        with atomic_path(self.path) as tmp:
            torch.save({**state, "rng": rng_state(), "fingerprint": self.fingerprint}, tmp)

    def load(self, device: torch.device) -> dict | None:
        """The saved state with the random streams restored, or None (no checkpoint, or another run's)."""
        if not self.path.exists():
            return None
        state = torch.load(self.path, map_location=device, weights_only=False)
        if state["fingerprint"] != self.fingerprint:
            log.warning("%s was written with other settings or inputs; starting afresh", self.path)
            return None
        set_rng_state(state["rng"])
        return state

    def clear(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
