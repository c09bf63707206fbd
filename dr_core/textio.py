"""Line readers shared by the data modules: plain or gzip, UTF-8, with 1-based line numbers for errors."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from dr_core.errors import DataError


def subfolders(folder: Path) -> list[Path]:
    """The visible folders in `folder`, by name; none when it cannot be listed."""
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []


def open_binary(path: Path) -> BinaryIO:
    """Open a plain or gzip-compressed file for reading bytes."""
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def hash_file(path: Path, *hashers: Any) -> None:
    """Feed the bytes of `path` to every hashlib hasher given, in 4 MB blocks."""
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            for h in hashers:
                h.update(block)


def text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its LF/CRLF end), decoding UTF-8; plain or .gz."""
    with open_binary(path) as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                yield lineno, raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as e:
                raise DataError(path, lineno, f"not UTF-8 ({e.reason})") from None


def json_records(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-empty line of a JSON-lines file, plain or .gz."""
    for lineno, line in text_lines(path):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(path, lineno, f"malformed JSON ({e.msg})") from None
        if not isinstance(record, dict):
            raise DataError(path, lineno, "expected a JSON object")
        yield lineno, record
