"""A JSON file of what the workflow computes at every Snakemake start-up (even a no-op `snakemake -n`): the config
schema, the validated recipes and the code fingerprints, read back instead of computed again.

Every entry is stored under a key made of everything it is computed from, so it is found only while it is exact:
`digest` of the inputs' contents, or `sources_key` for what depends on dr_core's code (the stat data of every
source file). Values go in and come out as copies; the file is written once, when the process exits
(`dr_core.atomic`), and best-effort (where it cannot be written, the work is only done again). No Snakemake here.
"""

from __future__ import annotations

import atexit
import copy
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

PACKAGE_DIR = Path(__file__).resolve().parent
SETTLE_S = 2.0


def digest(*parts: str | bytes) -> str:
    """A SHA-256 of `parts`, each length-prefixed (no two lists of parts share one)."""
    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "little") + data)
    return h.hexdigest()


class Memo:
    """Entries of a JSON file: `get` a copy, `put` one (the `keep` newest entries kept); `save` writes the file,
    once at exit after any `put`, not on each of a cold start's 30-odd puts (one fingerprint per step)."""

    def __init__(self, path: str | Path, keep: int = 64) -> None:
        self.path, self.keep, self.dirty = Path(path), keep, False
        try:
            entries = json.loads(self.path.read_text())
        except (OSError, ValueError):
            entries = {}
        self.entries: dict[str, Any] = entries if isinstance(entries, dict) else {}

    def get(self, key: str) -> Any:
        return copy.deepcopy(self.entries.get(key))

    def put(self, key: str, value: Any) -> None:
        """Store `value` (unless JSON would give back another value: non-string keys, NaN, ...)."""
        try:
            exact = json.loads(json.dumps(value)) == value
        except (TypeError, ValueError):
            exact = False
        if not exact:
            return
        self.entries.pop(key, None)
        self.entries[key] = copy.deepcopy(value)
        while len(self.entries) > self.keep:
            del self.entries[next(iter(self.entries))]
        if not self.dirty:
            self.dirty = True
            atexit.register(self.save)

    def save(self) -> None:
        """Write the entries (atomically) if a `put` changed them; a file that cannot be written is left as it was."""
        if not self.dirty:
            return
        from dr_core.atomic import atomic_path

        try:
            with atomic_path(self.path) as tmp:
                tmp.write_text(json.dumps(self.entries))
            self.dirty = False
        except OSError:
            pass


def sources_key(package_dir: Path = PACKAGE_DIR, settle_s: float = SETTLE_S) -> str | None:
    """A key that changes when any `.py` under `package_dir` is added, removed, renamed or written: their paths,
    sizes, mtimes, ctimes (set by every write, even one that puts the mtime back) and inodes, with the Python
    version. None while one changed less than `settle_s` ago: a file system stores times in ticks, and a second
    write within the tick of the first could leave the stat data as it was."""
    rows, newest = [sys.version, str(package_dir)], 0.0
    for root, dirs, files in os.walk(package_dir):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(f for f in files if f.endswith(".py")):
            st = os.stat(os.path.join(root, name))
            rows.append(f"{root}/{name} {st.st_size} {st.st_mtime_ns} {st.st_ctime_ns} {st.st_ino}")
            newest = max(newest, st.st_mtime, st.st_ctime)
    return None if newest > time.time() - settle_s else digest(*rows)


def step_fingerprints(memo: Memo) -> Callable[[str], str]:
    """`dr_core.fingerprint.step_fingerprint`, its values kept in `memo` under the sources' `sources_key`."""
    key = sources_key()
    entry = f"fingerprints {key}"
    known: dict[str, str] = (memo.get(entry) or {}) if key else {}

    def step_fingerprint(step: str) -> str:
        if step not in known:
            from dr_core.fingerprint import step_fingerprint as compute

            known[step] = compute(step)
            if key:
                memo.put(entry, known)
        return known[step]

    return step_fingerprint


def add_missing(target: Any, filled: Any) -> None:
    """Set into `target`, in place, what `filled` (`target` with more keys, such as a schema's defaults) adds: the
    keys its mappings lack, recursing into the mappings and lists both have."""
    if isinstance(target, dict) and isinstance(filled, dict):
        for key, value in filled.items():
            if key in target:
                add_missing(target[key], value)
            else:
                target[key] = value
    elif isinstance(target, list) and isinstance(filled, list):
        for item, filled_item in zip(target, filled):
            add_missing(item, filled_item)
