"""Resumable, checksummed downloads and atomic archive extraction."""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import shutil
import tarfile
import time
import zipfile
from pathlib import Path

import requests
from tqdm import tqdm

from dr_core.atomic import atomic_path
from dr_core.errors import DataError
from dr_core.textio import hash_file

log = logging.getLogger(__name__)

_RETRYABLE_STATUS = {408, 429, 500, 502, 503, 504}


def _integrity_problem(path: Path, size: int | None, md5: str | None, sha256: str | None) -> str | None:
    """None when `path` has the given size and matches every given digest, else a description of the first
    mismatch (the size is checked first: it is free and catches a truncated file)."""
    if size is not None and (got_size := path.stat().st_size) != size:
        return f"size mismatch: expected {size:,} bytes, got {got_size:,}"
    wanted = {name: value.lower() for name, value in (("md5", md5), ("sha256", sha256)) if value}
    if not wanted:
        return None
    hashers = {name: hashlib.new(name) for name in wanted}
    hash_file(path, *hashers.values())
    for name, value in wanted.items():
        got = hashers[name].hexdigest()
        if got != value:
            return f"{name} mismatch: expected {value}, got {got}"
    return None


def _total_from_content_range(value: str | None) -> int | None:
    """The full size from a `Content-Range: bytes a-b/total` header, if stated."""
    if not value or "/" not in value:
        return None
    total = value.rsplit("/", 1)[1]
    return int(total) if total.isdigit() else None


def _fetch_once(url: str, part: Path, chunk_size: int, timeout: float, headers: dict[str, str]) -> bool:
    """One request appending to `part` from its current size; True when the file is complete."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {**headers, "Range": f"bytes={offset}-"} if offset else headers
    with requests.get(url, headers=headers, stream=True, timeout=timeout) as r:
        if r.status_code == 416:  # nothing left to send: the part is complete, or longer than the file
            if _total_from_content_range(r.headers.get("Content-Range")) == offset:
                return True
            part.unlink()
            return False
        r.raise_for_status()
        resumed = r.status_code == 206 and r.headers.get("Content-Range", "").startswith(f"bytes {offset}-")
        if offset and not resumed:
            log.info("%s: server did not resume at byte %d, starting over", url, offset)
            offset = 0
        length = r.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        mode = "ab" if offset else "wb"
        with (
            open(part, mode) as f,
            tqdm(total=total, initial=offset, unit="B", unit_scale=True, desc=part.name, disable=None) as bar,
        ):
            for block in r.iter_content(chunk_size=chunk_size):
                f.write(block)
                bar.update(len(block))
    return total is None or part.stat().st_size == total


def download(
    url: str,
    dest: str | Path,
    *,
    md5: str | None = None,
    sha256: str | None = None,
    size: int | None = None,
    headers: dict[str, str] | None = None,
    chunk_size: int = 1 << 20,
    retries: int = 5,
    backoff: float = 2.0,
    timeout: float = 60.0,
) -> Path:
    """Fetch `url` to `dest` through `dest.part`, resuming with HTTP Range after a broken connection.

    Skips the fetch when `dest` exists and matches the given size and checksums; a mismatch after download
    removes the file and raises `DataError`. `headers` go with every request (MS MARCO's Azure storage serves
    byte ranges only to requests that name a recent API version). `retries` counts consecutive failed
    attempts (waits `backoff * 2**k` s).
    """
    dest = Path(dest)
    if dest.exists():
        problem = _integrity_problem(dest, size, md5, sha256)
        if problem is None:
            return dest
        log.warning("%s: %s; downloading again", dest, problem)
        dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    failures = 0
    while True:
        before = part.stat().st_size if part.exists() else 0
        try:
            if _fetch_once(url, part, chunk_size, timeout, headers or {}):
                break
            error: Exception = OSError(f"{url}: connection closed early")
        except requests.HTTPError as e:
            if e.response is None or e.response.status_code not in _RETRYABLE_STATUS:
                raise
            error = e
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as e:
            error = e
        after = part.stat().st_size if part.exists() else 0
        failures = 0 if after > before else failures + 1
        if failures > retries:
            raise OSError(f"{url}: giving up after {retries} retries without progress") from error
        wait = backoff * 2 ** max(failures - 1, 0)
        log.warning("%s: %s; resuming from byte %d in %.1f s", url, error, after, wait)
        time.sleep(wait)
    problem = _integrity_problem(part, size, md5, sha256)
    if problem is not None:
        part.unlink()
        raise DataError(dest, None, f"{problem} (downloaded from {url}); the file was removed")
    os.replace(part, dest)
    return dest


def _extract_tar(tar: tarfile.TarFile, dest: Path, archive: Path) -> None:
    """Unpack `tar` into `dest` with the "data" filter's protection (no member outside `dest`, no absolute or
    device members, no link leaving `dest`). Python 3.10.12+/3.11.4+ have the filter; older ones (Debian 12's
    3.11.2) get the same checks here before a plain extractall."""
    if hasattr(tarfile, "data_filter"):
        tar.extractall(dest, filter="data")
        return
    root = dest.resolve()
    for member in tar.getmembers():
        target = (root / member.name).resolve()
        if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
            raise tarfile.TarError(f"{archive}: member {member.name!r} is not a file, folder or link; refused")
        if member.issym():
            linked = (target.parent / member.linkname).resolve()
        elif member.islnk():
            linked = (root / member.linkname).resolve()
        else:
            linked = target
        for path in (target, linked):
            if path != root and root not in path.parents:
                raise tarfile.TarError(f"{archive}: member {member.name!r} would be written outside {dest}; refused")
        member.mode = (member.mode or 0o644) & 0o755  # as the data filter: no set-id bits, no group/other write
    tar.extractall(dest)


def extract(archive: str | Path, dest_dir: str | Path) -> Path:
    """Unpack a .zip, .tar.gz/.tgz or single-file .gz into `dest_dir` (built in a temp dir, then renamed)."""
    archive, dest_dir = Path(archive), Path(dest_dir)
    name = archive.name
    with atomic_path(dest_dir, is_dir=True) as tmp:
        if name.endswith(".zip"):
            with zipfile.ZipFile(archive) as z:
                z.extractall(tmp)
        elif name.endswith((".tar.gz", ".tgz", ".tar")):
            with tarfile.open(archive) as t:
                _extract_tar(t, tmp, archive)
        elif name.endswith(".gz"):
            with gzip.open(archive, "rb") as src, open(tmp / name[: -len(".gz")], "wb") as out:
                shutil.copyfileobj(src, out, 1 << 22)
        else:
            raise ValueError(f"{archive}: unknown archive type (want .zip, .tar.gz, .tgz, .tar or .gz)")
    return dest_dir
