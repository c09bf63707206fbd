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


class WriteError(OSError):
    """An output that could not be written (no space left, quota exceeded, permission denied, read-only file
    system); the message names the destination and the cause, and the command line prints it as one line."""

    def __init__(self, dest: str | Path, errno_: int, message: str) -> None:
        super().__init__(errno_, message, str(dest))
        self.dest = Path(dest)
        self.message = message

    def __str__(self) -> str:
        return self.message


class MissingPathError(FileNotFoundError):
    """A path given on the command line that does not exist; the message says what exists instead."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message
