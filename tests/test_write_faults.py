"""A write that fails for the machine's reasons (full disk, quota, permission) ends a command with one line naming
the output and the cause, no traceback, and leaves no partial output behind."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from dr_core import checkpoint
from dr_core.atomic import atomic_path, write_json
from dr_core.checkpoint import Checkpointer
from dr_core.errors import WriteError

# `python -m dr_core ...` with every file opened for writing under $DR_TEST_FULL_DIR opened on /dev/full instead:
# the kernel's own ENOSPC at the first flush
FULL_DISK = """
import builtins, os, runpy, sys
full = os.path.abspath(os.environ["DR_TEST_FULL_DIR"]) + os.sep
real_open = builtins.open
def open_(file, mode="r", *args, **kwargs):
    if isinstance(file, (str, os.PathLike)) and set(mode) & set("wax") and os.path.abspath(file).startswith(full):
        file = "/dev/full"
    return real_open(file, mode, *args, **kwargs)
builtins.open = open_
runpy.run_module("dr_core", run_name="__main__", alter_sys=True)
"""
needs_dev_full = pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")


def _full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_names_the_output_and_leaves_nothing(tmp_path, monkeypatch):
    dest = tmp_path / "out" / "metrics.json"
    monkeypatch.setattr(Path, "write_text", _full_disk)
    with pytest.raises(WriteError) as info:
        write_json({"a": 1}, dest)
    message = str(info.value)
    assert message.startswith(f"no space left on device writing {dest} (free: ") and " on /" in message
    assert info.value.errno == errno.ENOSPC and info.value.dest == dest
    assert isinstance(info.value, OSError) and "\n" not in message
    assert list((tmp_path / "out").iterdir()) == []  # neither the output nor its temporary


def test_a_folder_output_that_fills_the_disk_is_removed_whole(tmp_path):
    dest = tmp_path / "model"
    with pytest.raises(WriteError, match=f"no space left on device writing {dest}"):
        with atomic_path(dest, is_dir=True) as tmp:
            (tmp / "config.json").write_text("{}")
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp / "model.safetensors"))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("code", "cause"),
    [
        (errno.EDQUOT, "disk quota exceeded"),
        (errno.EACCES, "permission denied"),
        (errno.EROFS, "read-only file system"),
    ],
)
def test_a_temporary_that_cannot_be_made_names_the_output(tmp_path, monkeypatch, code, cause):
    dest = tmp_path / "runs" / "bm25.trec"

    def refused(*args, dir=None, prefix="", **kwargs):
        raise OSError(code, os.strerror(code), os.path.join(dir, prefix + "x1y2.tmp"))

    monkeypatch.setattr(tempfile, "mkstemp", refused)
    with pytest.raises(WriteError) as info:
        write_json({}, dest)
    assert str(info.value) == f"{cause} writing {dest}"


def test_another_files_error_inside_the_write_stays_that_files(tmp_path):
    other = tmp_path / "inputs" / "corpus.parquet"
    with pytest.raises(PermissionError) as info:
        with atomic_path(tmp_path / "out.tsv") as tmp:
            tmp.write_text("partial")
            raise PermissionError(errno.EACCES, "Permission denied", str(other))
    assert not isinstance(info.value, WriteError) and info.value.filename == str(other)
    assert info.value.__cause__ is None  # re-raised as it was
    assert list(tmp_path.iterdir()) == []


@contextlib.contextmanager
def read_only_folder(folder: Path):
    """`folder`, made and read-only while the block runs."""
    folder.mkdir()
    folder.chmod(0o500)
    try:
        yield folder
    finally:
        folder.chmod(0o700)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_a_permission_error_naming_the_output(tmp_path):
    with read_only_folder(tmp_path / "ro") as folder:
        with pytest.raises(WriteError, match=f"^permission denied writing {folder / 'x.json'}$"):
            write_json({}, folder / "x.json")


@needs_dev_full
def test_a_checkpoint_on_a_full_disk_is_a_write_error_not_torchs(tmp_path, monkeypatch):
    """torch.save onto a path reports a full disk as RuntimeError 'unexpected pos'; checkpoints go through a
    Python file, so the kernel's ENOSPC reaches atomic_path."""
    real_open = open
    monkeypatch.setattr(checkpoint, "open", lambda file, mode="r": real_open("/dev/full", mode), raising=False)
    ckpt = Checkpointer(tmp_path / "ckpt", {"run": 1})
    with pytest.raises(WriteError, match=f"^no space left on device writing {ckpt.path} \\(free: "):
        ckpt.save({"model": {"w": torch.zeros(4096)}, "step": 3})
    assert list((tmp_path / "ckpt").iterdir()) == []


def _cli(args: list[str], env: dict | None = None, wrapper: str | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-c", wrapper, *args] if wrapper else [sys.executable, "-m", "dr_core", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=300)


def _run_file(tmp_path: Path) -> Path:
    run = tmp_path / "run.trec"
    run.write_text("q1 Q0 d1 1 2.5 bm25\nq1 Q0 d2 2 1.5 bm25\n")
    return run


@needs_dev_full
def test_the_command_line_prints_a_full_disk_as_one_line(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    dest = out / "selected.trec"
    args = ["select-run", "--run", str(_run_file(tmp_path)), "--tag", "selected", "--out", str(dest)]
    proc = _cli(args, {"DR_TEST_FULL_DIR": str(out)}, FULL_DISK)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert f"ERROR dr_core: no space left on device writing {dest} (free: " in lines[0]
    assert "Traceback" not in proc.stderr and list(out.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_the_command_line_prints_a_refused_permission_as_one_line(tmp_path):
    with read_only_folder(tmp_path / "ro") as out:
        proc = _cli(["select-run", "--run", str(_run_file(tmp_path)), "--tag", "x", "--out", str(out / "x.trec")])
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert lines[0].endswith(f"ERROR dr_core: permission denied writing {out / 'x.trec'}")
    assert "Traceback" not in proc.stderr and list(out.iterdir()) == []
