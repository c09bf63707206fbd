"""Atomic outputs: write to a temporary sibling, then rename, so an interrupted job leaves nothing that looks done."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dr_core import __version__
from dr_core.errors import WriteError

# The causes of a failed write that are the machine's, not the program's: they end a command with one line
# naming the output and the cause (dr_core.cli.main) instead of a traceback.
WRITE_FAULTS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
}


@contextlib.contextmanager
def atomic_path(dest: str | Path, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `dest`; on success rename it to `dest`, on error remove it. A full disk,
    an exceeded quota or a refused permission while writing becomes a `WriteError` naming `dest` and the cause."""
    dest = Path(dest)
    try:
        tmp = _temporary(dest, is_dir)
    except OSError as e:
        fault = _write_error(e, dest)
        if fault is None:
            raise
        raise fault from e
    try:
        yield tmp
        if is_dir and dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except BaseException as e:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        fault = _write_error(e, dest, tmp) if isinstance(e, OSError) else None
        if fault is None:
            raise
        raise fault from e


def _temporary(dest: Path, is_dir: bool) -> Path:
    """A new temporary file or folder beside `dest` (its folder made first)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if is_dir:
        return Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    tmp = Path(name)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give outputs the usual permissions
    return tmp


def _write_error(e: OSError, dest: Path, tmp: Path | None = None) -> WriteError | None:
    """`e` as a `WriteError` naming `dest` when it is a write fault (full disk, quota, permission) of `dest`, its
    temporary sibling or the folders above it; else None (another file's error stays that file's)."""
    if isinstance(e, WriteError) or e.errno not in WRITE_FAULTS or not _concerns(e, dest, tmp):
        return None
    message = f"{WRITE_FAULTS[e.errno]} writing {dest}"
    if e.errno == errno.ENOSPC:
        message += f" ({_free_space(dest)})"
    return WriteError(dest, e.errno, message)


def _concerns(e: OSError, dest: Path, tmp: Path | None) -> bool:
    """Whether `e` arose writing `dest`: no file named (a write's), or `dest`, its temporary (or what is inside
    either) or a folder above `dest` named."""
    if not isinstance(e.filename, (str, bytes, os.PathLike)):
        return True
    path = os.path.abspath(os.fsdecode(e.filename))
    target = os.path.abspath(dest)
    if _within(path, target) or _within(target, path) or (tmp is not None and _within(path, os.path.abspath(tmp))):
        return True
    name = os.path.basename(path)  # a temporary that could not be made
    return os.path.dirname(path) == os.path.dirname(target) and name.startswith(f".{dest.name}.")


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _free_space(dest: Path) -> str:
    """'free: <size> on <mount point>' of the file system `dest` is written to."""
    folder = Path(os.path.abspath(dest)).parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    mount = folder
    while not os.path.ismount(mount) and mount != mount.parent:
        mount = mount.parent
    try:
        return f"free: {_size(shutil.disk_usage(folder).free)} on {mount}"
    except OSError:
        return f"on {mount}"


def _size(n: float) -> str:
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    i = 0
    while n >= 1024 and i < len(units) - 1:
        n, i = n / 1024, i + 1
    return f"{n:.0f} B" if i == 0 else f"{n:.1f} {units[i]}"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(obj: Any, dest: str | Path) -> None:
    """Write `obj` as indented JSON, atomically."""
    with atomic_path(dest) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_provenance(artefact: str | Path, config: dict[str, Any], step: str | None = None) -> None:
    """Record config, seed and library version beside an artefact: `<file>.meta.json` or `<dir>/dr_meta.json`.
    With `step` (a `python -m dr_core` command), `code_fingerprint` is that step's
    `dr_core.fingerprint.step_fingerprint`: the hash of the code that made the artefact, the one the workflow's
    rules rerun on."""
    artefact = Path(artefact)
    meta = {"dr_core_version": __version__, "config": config}
    if step:
        from dr_core.fingerprint import step_fingerprint

        meta["code_fingerprint"] = step_fingerprint(step)
    target = artefact / "dr_meta.json" if artefact.is_dir() else artefact.with_name(artefact.name + ".meta.json")
    write_json(meta, target)
