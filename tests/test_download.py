"""Downloads against a local HTTP server with Range support (and one that drops connections midway)."""

from __future__ import annotations

import gzip
import hashlib
import io
import re
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from dr_core.data.download import download, extract
from dr_core.errors import DataError

PAYLOAD = bytes(range(256)) * 157 + b"tail"  # 40,196 bytes


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        server = self.server
        server.requests.append((self.path, self.headers.get("Range")))
        server.seen_headers.append(dict(self.headers))
        data = server.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start = 0
        range_header = self.headers.get("Range")
        if range_header and server.honour_range:
            start = int(re.fullmatch(r"bytes=(\d+)-", range_header).group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        cuts = server.cuts.get(self.path)
        if cuts:  # promise the whole body, send only part of it, and hang up
            self.wfile.write(body[: cuts.pop(0)])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.files, httpd.cuts, httpd.requests, httpd.honour_range = {"/data.bin": PAYLOAD}, {}, [], True
    httpd.seen_headers = []
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


MD5 = hashlib.md5(PAYLOAD).hexdigest()
SHA256 = hashlib.sha256(PAYLOAD).hexdigest()
FAST = {"backoff": 0.01, "chunk_size": 4096}


def test_download_verifies_and_renames(server, tmp_path):
    dest = download(f"{server.url}/data.bin", tmp_path / "sub" / "data.bin", md5=MD5, sha256=SHA256, **FAST)
    assert dest.read_bytes() == PAYLOAD
    assert sorted(p.name for p in dest.parent.iterdir()) == ["data.bin"]


def test_download_resumes_after_dropped_connections(server, tmp_path):
    server.cuts["/data.bin"] = [10_000, 20_000]
    dest = download(f"{server.url}/data.bin", tmp_path / "data.bin", sha256=SHA256, **FAST)
    assert dest.read_bytes() == PAYLOAD
    ranges = [r for _, r in server.requests]
    assert len(ranges) == 3 and ranges[0] is None
    offsets = [int(re.fullmatch(r"bytes=(\d+)-", r).group(1)) for r in ranges[1:]]
    assert 0 < offsets[0] <= 10_000 < offsets[1] <= offsets[0] + 20_000
    assert not (tmp_path / "data.bin.part").exists()


def test_extra_headers_go_with_every_request_including_resumes(server, tmp_path):
    server.cuts["/data.bin"] = [10_000]
    download(f"{server.url}/data.bin", tmp_path / "data.bin", headers={"X-Ms-Version": "2019-12-12"}, **FAST)
    assert [h.get("X-Ms-Version") for h in server.seen_headers] == ["2019-12-12", "2019-12-12"]
    assert server.requests[1][1] is not None  # the second request was a resume


def test_size_mismatch_is_refused_before_hashing(server, tmp_path):
    with pytest.raises(DataError, match=rf"size mismatch: expected 40,197 bytes, got {len(PAYLOAD):,}"):
        download(f"{server.url}/data.bin", tmp_path / "data.bin", size=len(PAYLOAD) + 1, md5=MD5, **FAST)
    assert list(tmp_path.iterdir()) == []
    dest = download(f"{server.url}/data.bin", tmp_path / "data.bin", size=len(PAYLOAD), md5=MD5, **FAST)
    assert dest.read_bytes() == PAYLOAD


def test_download_resumes_an_existing_part_file(server, tmp_path):
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD[:1234])
    download(f"{server.url}/data.bin", tmp_path / "data.bin", md5=MD5, **FAST)
    assert (tmp_path / "data.bin").read_bytes() == PAYLOAD
    assert server.requests == [("/data.bin", "bytes=1234-")]


def test_download_finishes_a_complete_part_file(server, tmp_path):
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD)
    download(f"{server.url}/data.bin", tmp_path / "data.bin", md5=MD5, **FAST)
    assert (tmp_path / "data.bin").read_bytes() == PAYLOAD
    assert server.requests == [("/data.bin", f"bytes={len(PAYLOAD)}-")]


def test_download_starts_over_when_range_is_ignored(server, tmp_path):
    server.honour_range = False
    (tmp_path / "data.bin.part").write_bytes(b"stale bytes")
    download(f"{server.url}/data.bin", tmp_path / "data.bin", md5=MD5, **FAST)
    assert (tmp_path / "data.bin").read_bytes() == PAYLOAD


def test_checksum_mismatch_names_the_file_and_leaves_nothing(server, tmp_path):
    dest = tmp_path / "data.bin"
    with pytest.raises(DataError, match=r"data\.bin: md5 mismatch: expected 0+, got " + MD5):
        download(f"{server.url}/data.bin", dest, md5="0" * 32, **FAST)
    assert list(tmp_path.iterdir()) == []


def test_existing_file_with_matching_checksum_is_kept(server, tmp_path):
    dest = tmp_path / "data.bin"
    dest.write_bytes(PAYLOAD)
    assert download(f"{server.url}/data.bin", dest, sha256=SHA256, **FAST) == dest
    assert server.requests == []


def test_existing_file_with_wrong_checksum_is_fetched_again(server, tmp_path):
    dest = tmp_path / "data.bin"
    dest.write_bytes(b"corrupt")
    download(f"{server.url}/data.bin", dest, sha256=SHA256, **FAST)
    assert dest.read_bytes() == PAYLOAD


def test_missing_file_fails_at_once(server, tmp_path):
    with pytest.raises(requests.HTTPError):
        download(f"{server.url}/nope.bin", tmp_path / "nope.bin", **FAST)
    assert len(server.requests) == 1 and list(tmp_path.iterdir()) == []


def test_gives_up_without_progress(server, tmp_path):
    server.cuts["/data.bin"] = [0] * 10
    with pytest.raises(OSError, match="giving up after 2 retries"):
        download(f"{server.url}/data.bin", tmp_path / "data.bin", retries=2, **FAST)
    assert len(server.requests) == 3
    assert not (tmp_path / "data.bin").exists()


def _archives(tmp_path):
    zpath = tmp_path / "a.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        z.writestr("scifact/corpus.jsonl", "{}\n")
    tpath = tmp_path / "a.tar.gz"
    with tarfile.open(tpath, "w:gz") as t:
        info = tarfile.TarInfo("marco/para.txt")
        info.size = 6
        t.addfile(info, io.BytesIO(b"0\tabc\n"))
    gpath = tmp_path / "triples.tsv.gz"
    gpath.write_bytes(gzip.compress(b"1\t2\t3\r\n"))
    return [
        (zpath, "scifact/corpus.jsonl", b"{}\n"),
        (tpath, "marco/para.txt", b"0\tabc\n"),
        (gpath, "triples.tsv", b"1\t2\t3\r\n"),
    ]


def test_extract_formats(tmp_path):
    for archive, member, content in _archives(tmp_path):
        out = extract(archive, tmp_path / f"out_{archive.name}")
        assert (out / member).read_bytes() == content


def test_extract_failure_leaves_no_directory(tmp_path):
    bad = tmp_path / "broken.tar.gz"
    bad.write_bytes(b"not an archive")
    with pytest.raises(tarfile.TarError):
        extract(bad, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.tar.gz"]


def test_acquire_beir_unpacks_the_dataset_folder(server, tmp_path):
    from dr_core.data.acquire import acquire_beir

    tiny = Path(__file__).parent / "fixtures" / "beir" / "tiny"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path in tiny.rglob("*"):
            if path.is_file():
                zf.write(path, f"tiny/{path.relative_to(tiny)}")
    server.files["/tiny.zip"] = buf.getvalue()
    out = tmp_path / "downloads" / "tiny"
    acquire_beir(
        f"{server.url}/tiny.zip", out, md5=hashlib.md5(buf.getvalue()).hexdigest(), cache_dir=tmp_path / "downloads"
    )
    assert (out / "corpus.jsonl").read_bytes() == (tiny / "corpus.jsonl").read_bytes()
    assert (out / "qrels" / "test.tsv").exists()
    assert sorted(p.name for p in (tmp_path / "downloads").iterdir()) == ["tiny", "tiny.zip"]


def test_fetch_msmarco_member_from_its_archive(server, tmp_path, monkeypatch):
    from dr_core.data.msmarco import files

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in (("marco/para.txt", b"1\tsome text\n"), ("marco/para.title.txt", b"1\ta title\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    server.files["/marco.tar.gz"] = buf.getvalue()
    spec = files.MSMARCO_FILES["marco.tar.gz"]
    local = files.MsMarcoFile(
        f"{server.url}/marco.tar.gz", hashlib.md5(buf.getvalue()).hexdigest(), spec.contents, size=len(buf.getvalue())
    )
    monkeypatch.setitem(files.MSMARCO_FILES, "marco.tar.gz", local)
    files.fetch_raw_file("para.title.txt", tmp_path / "para.title.txt", tmp_path / "archives")
    assert (tmp_path / "para.title.txt").read_bytes() == b"1\ta title\n"
    assert (tmp_path / "archives" / "marco.tar.gz").exists()
    with pytest.raises(ValueError, match="unknown MS MARCO file"):
        files.fetch_raw_file("nope.txt", tmp_path / "x", tmp_path / "archives")


def test_published_msmarco_files_carry_their_checks():
    from dr_core.data.msmarco.files import MSMARCO_FILES

    collection = MSMARCO_FILES["collectionandqueries.tar.gz"]
    assert collection.md5 == "31644046b18952c1386cd4564ba2ae69" and collection.size == 1_057_717_952
    assert collection.headers == {"X-Ms-Version": "2019-12-12"}  # Azure resumes only with an API version
    assert MSMARCO_FILES["qrels.dev.small.tsv"].md5 == collection.md5  # a member is checked via its archive
    assert MSMARCO_FILES["marco.tar.gz"].headers == {}  # RocketQA's host is not Azure


def _tar_with(tmp_path: Path, name: str, member: tarfile.TarInfo, data: bytes = b"") -> Path:
    path = tmp_path / name
    with tarfile.open(path, "w:gz") as t:
        t.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return path


@pytest.mark.parametrize("without_filter", [False, True])
@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink_out"])
def test_extract_refuses_members_leaving_the_folder(tmp_path, monkeypatch, kind, without_filter):
    """Both paths (Python's data filter, and ours where tarfile has none: 3.11.2) refuse the same archives."""
    if without_filter:
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    member = tarfile.TarInfo({"dotdot": "../evil.txt", "absolute": "/tmp/evil.txt", "symlink_out": "link"}[kind])
    if kind == "symlink_out":
        member.type, member.linkname = tarfile.SYMTYPE, "../../outside"
    else:
        member.size = 4
    archive = _tar_with(tmp_path, f"{kind}.tar.gz", member, b"evil")
    with pytest.raises(tarfile.TarError):
        extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "evil.txt").exists()


def test_extract_without_the_filter_keyword_unpacks(tmp_path, monkeypatch):
    monkeypatch.delattr(tarfile, "data_filter", raising=False)
    calls = []
    real = tarfile.TarFile.extractall

    def no_filter(self, path=".", members=None, *, numeric_owner=False, **kwargs):
        assert "filter" not in kwargs  # 3.11.2's signature has no such keyword
        calls.append(path)
        return real(self, path, members, numeric_owner=numeric_owner)

    monkeypatch.setattr(tarfile.TarFile, "extractall", no_filter)
    tpath = _archives(tmp_path)[1][0]
    out = extract(tpath, tmp_path / "out")
    assert (out / "marco/para.txt").read_bytes() == b"0\tabc\n" and calls
