import shutil

import pandas as pd
import pytest
from conftest import shared_or_skip

from dr_core.data.beir import prepare_collection, prepare_qrels, read_corpus, read_qrels, read_queries
from dr_core.errors import DataError


def _copy(tiny_beir, tmp_path):
    dst = tmp_path / "beir"
    shutil.copytree(tiny_beir, dst)
    return dst


def test_prepare_writes_parquet(tiny_beir, tmp_path):
    prepare_collection(tiny_beir, tmp_path)
    prepare_qrels(tiny_beir, "train", tmp_path / "corpus.parquet", tmp_path / "queries.parquet", tmp_path / "q.parquet")
    corpus = pd.read_parquet(tmp_path / "corpus.parquet")
    queries = pd.read_parquet(tmp_path / "queries.parquet")
    qrels = pd.read_parquet(tmp_path / "q.parquet")
    assert list(corpus.columns) == ["id", "title", "text"] and len(corpus) == 48
    assert list(queries.columns) == ["qid", "text"] and len(queries) == 24
    assert list(qrels.columns) == ["qid", "docid", "rel"] and len(qrels) == 28
    assert (corpus["title"] == "").sum() == 1  # the passage without title is kept


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"_id": "1000", "title": "x", "text": "dup"}', "duplicate id '1000'"),
        ('{"_id": "9", "title": "", "text": "  "}', "empty document '9'"),
        ('{"_id": "9", "title": "x", "text": "broken"', "malformed JSON"),
        ('{"title": "x", "text": "no id"}', "missing field '_id'"),
    ],
)
def test_bad_corpus_line_names_file_and_line(tiny_beir, tmp_path, line, message):
    src = _copy(tiny_beir, tmp_path)
    corpus = src / "corpus.jsonl"
    lines = corpus.read_text().splitlines()
    lines.insert(5, line)
    corpus.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as err:
        read_corpus(corpus)
    assert message in str(err.value)
    assert str(err.value).startswith(f"{corpus}:")
    assert err.value.line is not None


def test_duplicate_reports_both_lines(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"_id": "a", "text": "x"}\n{"_id": "b", "text": "y"}\n{"_id": "a", "text": "z"}\n')
    with pytest.raises(DataError, match=r"corpus.jsonl:3: duplicate id 'a' \(first on line 1\)"):
        read_corpus(corpus)


def test_empty_docs_can_be_dropped_with_their_qrels(tmp_path):
    (tmp_path / "qrels").mkdir()
    (tmp_path / "corpus.jsonl").write_text('{"_id": "a", "text": "x"}\n{"_id": "b", "title": "", "text": ""}\n')
    (tmp_path / "queries.jsonl").write_text('{"_id": "q", "text": "x?"}\n')
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq\ta\t1\nq\tb\t1\n")
    with pytest.raises(DataError, match="empty document 'b'"):
        prepare_collection(tmp_path, tmp_path / "out")
    assert not (tmp_path / "out" / "corpus.parquet").exists()
    prepare_collection(tmp_path, tmp_path / "out", empty_docs="drop")
    out = tmp_path / "out"
    prepare_qrels(tmp_path, "test", out / "corpus.parquet", out / "queries.parquet", out / "q.parquet", "drop")
    assert pd.read_parquet(out / "q.parquet")["docid"].tolist() == ["a"]


def test_queries_validation(tmp_path):
    path = tmp_path / "queries.jsonl"
    path.write_text('{"_id": "1", "text": "ok"}\n{"_id": "2", "text": ""}\n')
    with pytest.raises(DataError, match=r"queries.jsonl:2: empty query '2'"):
        read_queries(path)


@pytest.mark.parametrize(
    "row, message",
    [
        ("q1\t1035\t1\textra", "expected 3 tab-separated fields"),
        ("q1\t1035\thigh", "score 'high' is not an integer"),
        ("qX\t1035\t1", "unknown query id 'qX'"),
        ("q1\t999999\t1", "unknown corpus id '999999'"),
    ],
)
def test_bad_qrels_row(tmp_path, row, message):
    path = tmp_path / "test.tsv"
    path.write_text(f"query-id\tcorpus-id\tscore\nq1\t1035\t1\n{row}\n")
    with pytest.raises(DataError) as err:
        read_qrels(path, {"q1"}, {"1035"})
    assert message in str(err.value) and str(err.value).startswith(f"{path}:3:")


@pytest.mark.shared
def test_real_scifact_counts(tmp_path):
    src = shared_or_skip("scifact")
    prepare_collection(src, tmp_path)
    assert len(pd.read_parquet(tmp_path / "corpus.parquet")) == 5183
    assert len(pd.read_parquet(tmp_path / "queries.parquet")) == 1109
    for split, nq, nrel in (("train", 809, 919), ("test", 300, 339)):
        dest = tmp_path / f"qrels.{split}.parquet"
        prepare_qrels(src, split, tmp_path / "corpus.parquet", tmp_path / "queries.parquet", dest)
        qrels = pd.read_parquet(dest)
        assert qrels["qid"].nunique() == nq and len(qrels) == nrel
