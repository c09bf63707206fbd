"""Atomic outputs: write to a temporary sibling, then rename, so an interrupted job leaves nothing that looks done."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dr_core import __version__


@contextlib.contextmanager
def atomic_path(dest: str | Path, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `dest`; on success rename it to `dest`, on error remove it."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if is_dir:
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
        os.close(fd)
        tmp = Path(name)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give outputs the usual permissions
    try:
        yield tmp
        if is_dir and dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(obj: Any, dest: str | Path) -> None:
    """Write `obj` as indented JSON, atomically."""
    with atomic_path(dest) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_provenance(artefact: str | Path, config: dict[str, Any]) -> None:
    """Record config, seed and library version beside an artefact: `<file>.meta.json` or `<dir>/dr_meta.json`."""
    artefact = Path(artefact)
    meta = {"dr_core_version": __version__, "config": config}
    target = artefact / "dr_meta.json" if artefact.is_dir() else artefact.with_name(artefact.name + ".meta.json")
    write_json(meta, target)
