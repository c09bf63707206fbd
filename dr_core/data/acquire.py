"""Fetch a BEIR-format dataset from its public zip (downloaded once, checksummed, unpacked atomically)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from dr_core.atomic import atomic_path
from dr_core.data.download import download, extract


def acquire_beir(url: str, out_dir: str | Path, *, md5: str | None, cache_dir: str | Path) -> None:
    """Download `url` into `cache_dir`, unpack it, and move the folder holding corpus.jsonl to `out_dir`."""
    archive = download(url, Path(cache_dir) / url.rstrip("/").rsplit("/", 1)[-1], md5=md5)
    with tempfile.TemporaryDirectory(dir=cache_dir) as scratch:
        unpacked = Path(scratch) / "unpacked"
        extract(archive, unpacked)
        found = sorted(unpacked.rglob("corpus.jsonl"))
        if not found:
            raise FileNotFoundError(f"{archive}: no corpus.jsonl inside")
        with atomic_path(out_dir, is_dir=True) as tmp:
            tmp.rmdir()
            shutil.move(str(found[0].parent), tmp)
