"""MS MARCO data layer: byte equality with the seed's shell commands, readers, runs.

The seed's commands run here with LC_ALL=C, the locale in which `join_titles` promises equality.
"""

from __future__ import annotations

import gzip
import os
import pickle
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dr_core.data import formats
from dr_core.data.formats import read_negatives
from dr_core.data.msmarco import files, tables, title_join, toolkits
from dr_core.data.msmarco import triples as triples_step
from dr_core.errors import DataError
from dr_core.runs import write_msmarco_run

FIXTURES = Path(__file__).parent / "fixtures" / "msmarco"
SEED_JOIN = (
    'join -t "$(echo -en \'\\t\')" -e \'\' -a 1 -o 1.1 2.2 1.2 <(sort -k1,1 "$1") <(sort -k1,1 "$2") | sort -k1,1 -n'
)
SEED_AWK = '$1==last {printf ",%s",$3; next} NR>1 {print "";} {last=$1; printf "%s\\t%s",$1,$3;} END{print "";}'
AWKS = [a for a in ("mawk", "gawk") if shutil.which(a)]
# Both awks the seed may meet (Debian's default mawk, and gawk): a case per awk, skipped where it is absent.
AWK_CASES = [
    pytest.param(a, marks=pytest.mark.skipif(a not in AWKS, reason=f"{a} is absent (apt-get install {a})"))
    for a in ("mawk", "gawk")
]
C_LOCALE = {**os.environ, "LC_ALL": "C"}


def seed_join(para: Path, titles: Path) -> bytes:
    cmd = ["bash", "-c", SEED_JOIN, "seed", str(para), str(titles)]
    return subprocess.run(cmd, check=True, capture_output=True, env=C_LOCALE).stdout


def seed_negatives(awk: str, triples: Path) -> bytes:
    cmd = [awk, "-v", "RS=\\r\\n", SEED_AWK, str(triples)]
    return subprocess.run(cmd, check=True, capture_output=True, env=C_LOCALE).stdout


def ours_join(tmp_path: Path, para: Path, titles: Path, **kw) -> bytes:
    out = tmp_path / "corpus.tsv"
    title_join.join_titles(para, titles, out, **kw)
    return out.read_bytes()


def ours_negatives(tmp_path: Path, triples: Path, **kw) -> bytes:
    out = tmp_path / "negatives.tsv"
    triples_step.negatives_from_triples(triples, out, **kw)
    return out.read_bytes()


# ---- join_titles ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk_bytes", [64 << 20, 300, 1])
def test_join_titles_matches_seed_on_fixture(tmp_path, chunk_bytes):
    para, titles = FIXTURES / "para.txt", FIXTURES / "para.title.txt"
    expected = seed_join(para, titles)
    assert b"\r\t" in expected and b"\t\t" in expected  # CRLF titles and missing titles are exercised
    assert ours_join(tmp_path, para, titles, chunk_bytes=chunk_bytes) == expected
    assert [p.name for p in tmp_path.iterdir()] == ["corpus.tsv"]


ODD_PARA = (
    b"007\tseven with zeros\n7\tseven\n-3\tminus three\n1.5\tone and a half\n1.50\tone and a half again\n"
    b"abc\tnot a number\n12abc\ttwelve-ish\n7\tseven again\n\xc3\xa9t\xc3\xa9\tutf-8 id\n5\r\n"
    b"10\tten\twith\ta tab\n9\tnine\n-0\tminus zero\n0\tzero\n.5\thalf\n8\tno final newline"
)
ODD_TITLES = b"7\tT7\n007\tT007\n7\tT7 again\nabc\r\n1.5\tT1.5\textra\n9\t\n5\r\tT5\n8\tT8\r\n0\tT0\n.5\n"


@pytest.mark.parametrize("chunk_bytes", [64 << 20, 40])
def test_join_titles_matches_seed_on_odd_ids(tmp_path, chunk_bytes):
    para, titles = tmp_path / "para.txt", tmp_path / "para.title.txt"
    para.write_bytes(ODD_PARA)
    titles.write_bytes(ODD_TITLES)
    expected = seed_join(para, titles)
    out = tmp_path / "out"
    out.mkdir()
    assert ours_join(out, para, titles, chunk_bytes=chunk_bytes) == expected


@pytest.mark.parametrize(
    "para, titles, bad, line",
    [
        (b"1\ta\n2 3\tb\n", b"1\tt\n", "para.txt", 2),
        (b"1\ta\n\n", b"1\tt\n", "para.txt", 2),
        (b"1\ta\n", b"1\tt\n 4\tu\n", "para.title.txt", 2),
        (b"1\ta\n", b"1\tt\n\tu\n", "para.title.txt", 2),
    ],
)
def test_join_titles_refuses_ids_the_seed_mishandles(tmp_path, para, titles, bad, line):
    (tmp_path / "para.txt").write_bytes(para)
    (tmp_path / "para.title.txt").write_bytes(titles)
    with pytest.raises(DataError, match=rf"{bad}:{line}: id") as e:
        title_join.join_titles(tmp_path / "para.txt", tmp_path / "para.title.txt", tmp_path / "out.tsv")
    assert e.value.line == line
    assert not (tmp_path / "out.tsv").exists()


# ---- negatives_from_triples -------------------------------------------------------------------------------------


@pytest.mark.parametrize("awk", AWK_CASES)
@pytest.mark.parametrize("chunk_bytes", [16 << 20, 29, 3])
def test_negatives_match_seed_on_fixture(tmp_path, awk, chunk_bytes):
    triples = FIXTURES / "qidpidtriples.train.full.2.tsv"
    expected = seed_negatives(awk, triples)
    assert ours_negatives(tmp_path, triples, chunk_bytes=chunk_bytes) == expected
    qids = [line.split(b"\t")[0] for line in expected.splitlines()]
    assert len(qids) > len(set(qids))  # a qid that comes back later gets a second line, like the seed's


def test_negatives_read_gzip(tmp_path):
    triples = FIXTURES / "qidpidtriples.train.full.2.tsv"
    gz = tmp_path / "triples.tsv.gz"
    gz.write_bytes(gzip.compress(triples.read_bytes()))
    assert ours_negatives(tmp_path, gz) == ours_negatives(tmp_path, triples)


ODD_TRIPLES = [
    b"0\t1\t2\r\n0\t1\t3\r\n5\t1\t4\r\n",  # qid 0 equals awk's unset `last`: the file starts with ','
    b"07\t1\t4\r\n7\t1\t5\r\n7.0\t1\t6\r\n1e1\t1\t7\r\n10\t1\t8\r\n+10\t\t12\r\n",  # numeric comparison
    b"1\t2\t3\r\n\r\n\r\n 1  2  3 \r\n1 2\r\n1\r\nx\ty\tz\tw\r\n.5\ta\tb",  # blanks, empty records, no final CRLF
    b"3\t1\t2\r\n3\t1\t2\r\r\n3\t\r1\t2\r\n",  # stray CRs are field bytes
    b"",
]


@pytest.mark.parametrize("awk", AWK_CASES)
@pytest.mark.parametrize("data", ODD_TRIPLES)
def test_negatives_match_seed_on_odd_records(tmp_path, awk, data):
    triples = tmp_path / "triples.tsv"
    triples.write_bytes(data)
    expected = seed_negatives(awk, triples)
    for chunk_bytes in (16 << 20, 5):
        assert ours_negatives(tmp_path, triples, chunk_bytes=chunk_bytes) == expected


def test_negatives_where_mawk_and_gawk_disagree(tmp_path):
    """mawk reads '0x10' as 16, gawk reads '8\\r' as 8; we follow POSIX decimal numbers in both places."""
    triples = tmp_path / "triples.tsv"
    triples.write_bytes(b"8\t1\t1\r\n8\r\r\n0x10\t1\t6\r\n16\t1\t7\r\n")
    assert ours_negatives(tmp_path, triples) == b"8\t1\n8\r\t\n0x10\t6\n16\t7\n"


def test_vectorised_and_general_paths_agree():
    rng = random.Random(0)
    rows = []
    for _ in range(3000):
        q = rng.choice(["0", "1", "7", "42", "1000", "999999999999999"])
        rows.append(f"{q}\t{rng.randrange(10**7)}\t{rng.randrange(10**7)}\r\n")
    records = "".join(rows).encode()
    for last in (None, b"7", b"x"):
        fast_state, slow_state = triples_step._AwkState(last), triples_step._AwkState(last)
        fast = triples_step._triples_vectorised(records, fast_state)
        assert fast is not None
        assert fast == triples_step._triples_general(records, slow_state, Path("t"))
        assert fast_state == slow_state


@pytest.mark.parametrize("chunk_bytes", [16 << 20, 4])
def test_negatives_refuse_lf_line_ends(tmp_path, chunk_bytes):
    triples = tmp_path / "triples.tsv"
    triples.write_bytes(b"1\t2\t3\r\n4\t5\t6\n7\t8\t9\n")
    if AWKS:  # the seed reads everything after the last CRLF as one record: one line for two rows
        assert seed_negatives(AWKS[0], triples) == b"1\t3\n4\t6\n"
    with pytest.raises(DataError, match=r"triples.tsv:2: line ends with LF"):
        ours_negatives(tmp_path, triples, chunk_bytes=chunk_bytes)
    assert not (tmp_path / "negatives.tsv").exists()


# ---- readers ----------------------------------------------------------------------------------------------------


def test_read_negatives_tsv_merges_repeated_qids(tmp_path):
    out = tmp_path / "neg.tsv"
    triples_step.negatives_from_triples(FIXTURES / "qidpidtriples.train.full.2.tsv", out)
    neg = read_negatives(out)
    assert neg["121352"] == ["7067033", "999", "999", "999", "2", "13", "1000"]
    assert len(neg) == 8


def test_read_st_hard_negatives():
    path = FIXTURES / "msmarco-hard-negatives.jsonl.gz"
    with gzip.open(path, "rt") as f:
        first = __import__("json").loads(f.readline())
    everything = toolkits.read_st_hard_negatives(path)
    assert len(everything) == 12
    qid = str(first["qid"])
    bm25 = [str(p) for p in first["neg"]["bm25"]]
    assert everything[qid][: len(bm25)] == bm25
    two = toolkits.read_st_hard_negatives(path, systems=["msmarco-distilbert-base-v3", "bm25"], max_per_system=2)
    expected = []
    for system in ("msmarco-distilbert-base-v3", "bm25"):
        expected += [str(p) for p in first["neg"][system][:2] if str(p) not in expected]
    assert two[qid] == expected
    assert not set(map(str, first["pos"])) & set(everything[qid])


def test_read_tevatron_groups():
    path = FIXTURES / "tevatron_train.jsonl"
    neg = toolkits.read_tevatron_groups(path)
    pos = toolkits.read_tevatron_groups(path, field="positive_passages")
    assert len(neg) == len(pos) == 6
    assert all(len(v) == 4 for v in neg.values()) and all(len(v) == 1 for v in pos.values())


@pytest.mark.parametrize(
    "name", ["qidpidtriples.train.full.2.tsv", "tevatron_train.jsonl", "msmarco-hard-negatives.jsonl.gz"]
)
def test_negatives_file_step_reads_each_published_format(tmp_path, name):
    """`negatives.file` may be ours (here the seed's triples output), a Tevatron train jsonl or
    sentence-transformers' hard negatives: the `negatives-file` step writes qid<TAB>pid,... from each."""
    src = FIXTURES / name
    if name.startswith("qidpidtriples"):
        src = tmp_path / "triples.negatives.tsv"
        triples_step.negatives_from_triples(FIXTURES / name, src)
        expected = read_negatives(src)
    elif name.startswith("tevatron"):
        expected = toolkits.read_tevatron_groups(src)
    else:
        expected = toolkits.read_st_hard_negatives(src)
    out = tmp_path / "train_negatives.tsv"
    subprocess.run(
        [sys.executable, "-m", "dr_core", "negatives-file", "--src", str(src), "--out", str(out)], check=True
    )
    assert read_negatives(out) == {q: p for q, p in expected.items() if p} and len(expected) >= 6


def test_read_ce_scores():
    path = FIXTURES / "cross-encoder-ms-marco-MiniLM-L-6-v2-scores.pkl.gz"
    with gzip.open(path) as f:
        raw = pickle.load(f)
    scores = toolkits.read_ce_scores(path)
    qid, by_pid = next(iter(raw.items()))
    assert scores[str(qid)] == {str(p): s for p, s in by_pid.items()}
    assert list(toolkits.read_ce_scores(path, qids=[str(qid)])) == [str(qid)]


def test_id_text_readers():
    collection = dict(formats.iter_id_text(FIXTURES / "collection.tsv"))
    assert len(collection) == 30 and "8841822" in collection
    assert len(tables.read_queries(FIXTURES / "queries.dev.small.tsv")) == 10
    assert len(tables.read_queries(FIXTURES / "train.query.txt")) == 12


def test_iter_corpus_tsv_reads_join_output(tmp_path):
    out = tmp_path / "corpus.tsv"
    title_join.join_titles(FIXTURES / "para.txt", FIXTURES / "para.title.txt", out)
    rows = list(tables.iter_corpus_tsv(out))
    assert len(rows) == out.read_bytes().count(b"\n")
    assert ("4242", "Title of the passage with no text", "") in rows
    assert ("1", "Bomb", rows[1][2]) == rows[1]


def test_read_trec_qrels_formats(tmp_path):
    dev = formats.read_trec_qrels(FIXTURES / "qrels.dev.small.tsv")
    assert len(dev) == 10 and len(dev["2"]) == 2
    two = tmp_path / "qrels.train.tsv"
    two.write_text("5\t17\r\n5\t18\r\n")
    assert formats.read_trec_qrels(two) == {"5": {"17": 1, "18": 1}}


def _gz(data: bytes) -> bytes:
    """Gzip with a fixed header time: the bytes are test ids, which every pytest-xdist worker must collect alike."""
    return gzip.compress(data, mtime=0)


MALFORMED = [
    (read_negatives, "neg.tsv", b"1\t2,3\n4 5,6\n", 2),
    (read_negatives, "neg.tsv", b"1\t2,3\n4\t5,,6\n", 2),
    (toolkits.read_st_hard_negatives, "hn.jsonl.gz", _gz(b'{"qid": 1, "pos": [2], "neg": {}}\n{"qid": 3\n'), 2),
    (toolkits.read_st_hard_negatives, "hn.jsonl.gz", _gz(b'{"qid": 1, "pos": [2], "neg": {"bm25": 5}}\n'), 1),
    (toolkits.read_st_hard_negatives, "hn.jsonl.gz", _gz(b'{"qid": 1, "neg": {}}\n{"qid": 1, "neg": {}}\n'), 2),
    (toolkits.read_tevatron_groups, "tev.jsonl", b'{"query_id": "1", "negative_passages": [{"id": "2"}]}\n', 1),
    (toolkits.read_tevatron_groups, "tev.jsonl", b'{"query_id": "1", "query": "q", "positive_passages": []}\n', 1),
    (formats.iter_id_text, "collection.tsv", b"1\tok\n2 no tab\n", 2),
    (formats.iter_id_text, "collection.tsv", b"1\tok\n2\tbad \xff byte\n", 2),
    (tables.read_queries, "queries.dev.small.tsv", b"1\ta\n2\tb\n1\tc\n", 3),
    (tables.iter_corpus_tsv, "corpus.tsv", b"1\tt\tx\n2\tx\n", 2),
    (formats.read_trec_qrels, "qrels.dev.small.tsv", b"1\t0\t2\t1\n1\t0\t3\n", 2),
    (formats.read_trec_qrels, "qrels.dev.small.tsv", b"1\t0\t2\tyes\n", 1),
]


@pytest.mark.parametrize("reader, name, data, line", MALFORMED)
def test_readers_name_file_and_line(tmp_path, reader, name, data, line):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(DataError, match=rf"{name}:{line}: ") as e:
        result = reader(path)
        list(result)  # the iterators fail while iterating
    assert e.value.line == line and e.value.path == path


@pytest.mark.parametrize("data", [b"not a pickle", _gz(pickle.dumps([1, 2])), _gz(b"junk")])
def test_read_ce_scores_rejects_bad_files(tmp_path, data):
    path = tmp_path / "scores.pkl.gz"
    path.write_bytes(data)
    with pytest.raises(DataError, match="scores.pkl.gz: "):
        toolkits.read_ce_scores(path)


# ---- runs, file table --------------------------------------------------------------------------------------------


def test_write_msmarco_run_ranks_by_score(tmp_path):
    out = tmp_path / "run.tsv"
    write_msmarco_run({"q1": [("a", 0.1), ("b", 0.9), ("c", 0.1)], "q2": [("d", 1.0)]}, out)
    assert out.read_text() == "q1\tb\t1\nq1\tc\t2\nq1\ta\t3\nq2\td\t1\n"  # a tie as trec_eval ranks it


def test_msmarco_files_table():
    for name in (
        "marco.tar.gz",
        "qrels.train.tsv",
        "qidpidtriples.train.full.2.tsv.gz",
        "queries.dev.small.tsv",
        "qrels.dev.small.tsv",
        "msmarco-hard-negatives.jsonl.gz",
        "cross-encoder-ms-marco-MiniLM-L-6-v2-scores.pkl.gz",
    ):
        entry = files.MSMARCO_FILES[name]
        assert entry.url.startswith("https://") and entry.contents
        assert entry.url.endswith(name) or entry.member == name
