import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from dr_core.data.lotte import prepare_lotte, prepare_lotte_qrels
from dr_core.errors import DataError
from dr_core.evaluate import evaluate

FIXTURES = Path(__file__).parent / "fixtures" / "lotte"
OWN, CONVERTED = FIXTURES / "lotte", FIXTURES / "converted"  # release root; Disentangled Retriever's copy


def _tables(src: Path, out: Path, query_set: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    prepare_lotte(src, out, "technology", "test", query_set)
    prepare_lotte_qrels(
        src, "technology", "test", query_set, out / "corpus.parquet", out / "queries.parquet", out / "qrels.parquet"
    )
    return tuple(pd.read_parquet(out / f"{t}.parquet") for t in ("corpus", "queries", "qrels"))


@pytest.mark.parametrize("query_set, n_qrels", [("search", 4), ("forum", 5)])
def test_both_layouts_give_the_same_tables(tmp_path, query_set, n_qrels):
    own = _tables(OWN, tmp_path / "own", query_set)
    converted = _tables(CONVERTED / "technology" / "test", tmp_path / "conv", query_set)  # the folder itself
    corpus, queries, qrels = own
    assert list(corpus.columns) == ["id", "title", "text"] and len(corpus) == 12 and (corpus["title"] == "").all()
    assert list(queries.columns) == ["qid", "text"] and len(queries) == 4
    assert list(qrels.columns) == ["qid", "docid", "rel"] and len(qrels) == n_qrels and (qrels["rel"] == 1).all()
    for a, b in zip(own, converted):
        pd.testing.assert_frame_equal(a, b)


def test_forum_answers_are_read_from_answer_pids(tmp_path):
    _, queries, qrels = _tables(OWN, tmp_path, "forum")
    assert queries.set_index("qid").loc["3", "text"] == "Which USB-C cable for an external monitor?"
    assert sorted(qrels[qrels["qid"] == "3"]["docid"]) == ["5", "9"]


def _copy(tmp_path: Path, src: Path = OWN) -> Path:
    dst = tmp_path / "src"
    shutil.copytree(src, dst)
    return dst


def _edit(path: Path, lineno: int, line: str) -> None:
    lines = path.read_text().splitlines()
    lines[lineno - 1] = line
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    "name, lineno, line, message",
    [
        ("collection.tsv", 3, "0\tagain", "duplicate id '0' (first on line 1)"),
        ("collection.tsv", 2, "1 no tab", "expected 'id<TAB>text'"),
        ("collection.tsv", 4, "3\t  ", "empty passage '3'"),
        ("questions.forum.tsv", 2, "1\t", "empty query '1'"),
        ("qas.forum.jsonl", 2, '{"qid": 1, "query": "Why?"}', '"answer_pids"'),
        ("qas.forum.jsonl", 3, '{"qid": 2, "answer_pids": [99]}', "unknown passage id '99'"),
        ("qas.forum.jsonl", 4, '{"qid": 7, "answer_pids": [1]}', "unknown query id '7'"),
        ("qas.forum.jsonl", 1, '{"qid": 0, "answer_pids": [1]', "malformed JSON"),
    ],
)
def test_bad_lotte_line_names_file_and_line_and_leaves_nothing(tmp_path, name, lineno, line, message):
    src = _copy(tmp_path)
    path = src / "technology" / "test" / name
    _edit(path, lineno, line)
    out = tmp_path / "out"
    with pytest.raises(DataError) as err:
        _tables(src, out, "forum")
    assert message in str(err.value) and str(err.value).startswith(f"{path}:{lineno}:")
    left = {p.name for p in out.glob("*")} if out.exists() else set()
    assert "qrels.parquet" not in left and not any(".tmp" in n or n.startswith(".") for n in left)


def test_bad_converted_qrels_line(tmp_path):
    src = _copy(tmp_path, CONVERTED)
    path = src / "technology" / "test" / "qrels.forum"
    _edit(path, 2, "1 0 4")
    with pytest.raises(DataError, match=r"qrels\.forum:2: expected 'qid 0 pid rel'"):
        _tables(src, tmp_path / "out", "forum")
    assert not (tmp_path / "out" / "qrels.parquet").exists()


@pytest.mark.parametrize("name", ["collection.tsv", "questions.forum.tsv", "qas.forum.jsonl"])
def test_missing_file_is_named_and_nothing_is_written(tmp_path, name):
    src = _copy(tmp_path)
    (src / "technology" / "test" / name).unlink()
    out = tmp_path / "out"
    with pytest.raises(DataError, match=re.escape(f"{name}: missing (lotte layout")):
        _tables(src, out, "forum")
    assert not out.exists() or not any(out.iterdir())


def test_success_at_5_counts_any_answer_in_the_top_5():
    qrels = pd.DataFrame({"qid": ["a", "a", "b"], "docid": ["x", "y", "z"], "rel": [1, 1, 1]})
    top = {f"d{i}": 10.0 - i for i in range(6)}
    run = {"a": {**top, "y": 6.5}, "b": {**top, "z": 4.0}}  # a: y at rank 4; b: z at rank 7
    mean, per_query = evaluate(run, qrels, ["success@5", "ndcg@10"])
    assert per_query["a"]["success@5"] == 1.0 and per_query["b"]["success@5"] == 0.0
    assert mean["success@5"] == 0.5
