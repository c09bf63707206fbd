"""Exceptions shared by the data readers."""

from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """A malformed input file; the message names the file and, when known, the 1-based line."""

    def __init__(self, path: str | Path, line: int | None, message: str) -> None:
        self.path = Path(path)
        self.line = line
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")
