"""`python -m dr_core try`: a typed query against a round's corpus embeddings or its saved index."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import faiss
import numpy as np
import pandas as pd
import pytest
from conftest import REPO, prepare_tokenized

from dr_core.batching import Padder
from dr_core.bm25 import bm25_search
from dr_core.encode import EncodeSettings, encode_corpus_shard
from dr_core.index import IndexSettings, build_index
from dr_core.model import BiEncoder, EncoderSpec, load_tokenizer
from dr_core.runs import read_trec
from dr_core.tryout import QueryEncoder, RoundSearcher


@pytest.fixture(scope="module")
def run_dir(tiny_bert, tmp_path_factory) -> Path:
    """results/<name> with data/tiny and round1/{model, tiny/emb/shard0-1} (query template 'query: {text}')."""
    run = tmp_path_factory.mktemp("run")
    data = prepare_tokenized(tiny_bert, run / "data" / "tiny")
    spec = EncoderSpec(pooling="mean", q_max_len=16, p_max_len=48, query_template="query: {text}")
    model = run / "round1" / "model"
    BiEncoder.from_base(str(tiny_bert), spec).save(model, load_tokenizer(tiny_bert))
    emb = run / "round1" / "tiny" / "emb"
    for s in range(2):
        encode_corpus_shard(
            model, data / "tc.parquet", s, 2, emb / f"shard{s}.npy", emb / f"shard{s}.ids.txt", EncodeSettings()
        )
    return run


def _exact(run_dir: Path, query: str) -> pd.Series:
    emb = run_dir / "round1" / "tiny" / "emb"
    vectors = np.concatenate([np.load(emb / f"shard{s}.npy") for s in range(2)])
    ids = [i for s in range(2) for i in (emb / f"shard{s}.ids.txt").read_text().split()]
    q = QueryEncoder(run_dir / "round1" / "model")([query])[0]
    return pd.Series(vectors @ q, index=ids).sort_values(ascending=False)


def test_top_hits_are_the_exact_ranking_with_titles(run_dir):
    hits = RoundSearcher(run_dir, 1, "tiny").search("solar panels", k=10, preview=20)
    expected = _exact(run_dir, "solar panels").head(10)
    assert [h.docid for h in hits] == expected.index.tolist()
    assert np.allclose([h.score for h in hits], expected.to_numpy(), atol=1e-5)
    corpus = pd.read_parquet(run_dir / "data" / "tiny" / "corpus.parquet").set_index("id")
    assert [h.title for h in hits] == corpus.loc[expected.index, "title"].tolist()
    assert all(len(h.text) <= 20 for h in hits) and hits[0].text == corpus.loc[hits[0].docid, "text"][:20]


def test_the_query_template_is_applied(run_dir, tiny_bert):
    model = BiEncoder.load(run_dir / "round1" / "model").eval()
    tok = load_tokenizer(tiny_bert)
    plain = np.array(tok("query: solar panels", add_special_tokens=False)["input_ids"])
    ours = model.encode(**Padder(tok, 16)([plain]), is_query=True).detach().numpy()
    assert np.allclose(QueryEncoder(run_dir / "round1" / "model")(["solar panels"]), ours, atol=1e-6)


def test_saved_index_is_used_and_one_of_another_model_refused(run_dir, tiny_bert, tmp_path):
    folder = run_dir / "round1" / "tiny"
    pairs = [(folder / "emb" / f"shard{s}.npy", folder / "emb" / f"shard{s}.ids.txt") for s in range(2)]
    build_index(
        pairs, run_dir / "round1" / "model", folder / "index.faiss", folder / "index.json", IndexSettings("Flat")
    )
    try:
        hits = RoundSearcher(run_dir, 1, "tiny").search("vaccine response", k=5)
        assert [h.docid for h in hits] == _exact(run_dir, "vaccine response").head(5).index.tolist()
        other = tmp_path / "other"
        spec = EncoderSpec(pooling="cls", q_max_len=16, p_max_len=48)
        BiEncoder.from_base(str(tiny_bert), spec).save(other, load_tokenizer(tiny_bert))
        with pytest.raises(ValueError, match="built with another model"):
            RoundSearcher(run_dir, 1, "tiny", model_dir=other)
    finally:
        (folder / "index.faiss").unlink()
        (folder / "index.json").unlink()


def test_a_model_of_another_dimension_is_refused(run_dir, tiny_bert, tmp_path):
    other = tmp_path / "projected"
    spec = EncoderSpec(pooling="mean", q_max_len=16, p_max_len=48, projection_dim=8)
    BiEncoder.from_base(str(tiny_bert), spec).save(other, load_tokenizer(tiny_bert))
    with pytest.raises(ValueError, match="embeds in 8 dimensions, the index of round 1 in 32"):
        RoundSearcher(run_dir, 1, "tiny", model_dir=other)


def test_cli_prompts_when_no_query_is_given(run_dir):
    cmd = [sys.executable, "-m", "dr_core", "try", "--run-dir", str(run_dir), "--round", "1", "--dataset", "tiny"]
    proc = subprocess.run([*cmd, "-k", "3"], input="solar panels\n\n", capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    top = _exact(run_dir, "solar panels").index[0]
    lines = proc.stdout.split("query> ")[1].splitlines()
    assert lines[1] == "solar panels" and len(lines) == 5 and top in lines[2]
    assert "passages, loaded in" in proc.stderr


def _try_cli(run_dir: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "dr_core", "try", "--run-dir", str(run_dir), "--dataset", "tiny", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)


def _run_docs(path: Path) -> dict[str, list[str]]:
    run = read_trec(path)
    return {q: g["docid"].tolist() for q, g in run.groupby("qid")}


def _top_scores(run: Path, scored_by: Path, k: int | None = None) -> dict[str, list[float]]:
    """Per query, the scores in `scored_by` of the first `k` documents of `run` (ties may be ordered apart)."""
    scores = read_trec(scored_by).set_index(["qid", "docid"])["score"]
    return {q: [scores[(q, d)] for d in docs[:k]] for q, docs in _run_docs(run).items()}


def test_a_queries_file_gives_trec_runs_of_dense_bm25_and_hybrid(run_dir, tmp_path):
    queries = tmp_path / "q.tsv"
    queries.write_text("a\tsolar panels\nb\tvaccine response\n")
    dense, bm25 = tmp_path / "dense.trec", tmp_path / "bm25.trec"
    for system, out in (("dense", dense), ("bm25", bm25)):
        proc = _try_cli(
            run_dir, "--round", "1", "--system", system, "--queries-file", str(queries), "--out", str(out), "-k", "5"
        )
        assert proc.returncode == 0, proc.stderr
    assert _run_docs(dense) == {
        "a": _exact(run_dir, "solar panels").head(5).index.tolist(),
        "b": _exact(run_dir, "vaccine response").head(5).index.tolist(),
    }
    lines = bm25.read_text().splitlines()
    assert len(lines) == 10 and lines[0].split()[3:6:2] == ["1", "bm25"]
    corpus = pd.read_parquet(run_dir / "data" / "tiny" / "corpus.parquet")
    ids, _ = bm25_search(corpus, pd.DataFrame({"qid": ["a", "b"], "text": ["solar panels", "vaccine response"]}), 5)
    assert _run_docs(bm25) == {"a": [d for d in ids[0] if d], "b": [d for d in ids[1] if d]}

    hybrid = tmp_path / "hybrid.trec"
    args = ("--round", "1", "--system", "hybrid", "--queries-file", str(queries), "--out", str(hybrid), "-k", "3")
    proc = _try_cli(run_dir, *args)
    assert proc.returncode == 1 and "bm25+round1/fusion.json: no tuned weight" in proc.stderr
    tuned = run_dir / "bm25+round1" / "fusion.json"
    tuned.parent.mkdir()
    try:
        tuned.write_text(json.dumps({"weight": 0.0}))  # all BM25: its top 3
        assert _try_cli(run_dir, *args).returncode == 0
        assert _top_scores(hybrid, bm25) == _top_scores(bm25, bm25, 3)
        assert hybrid.read_text().split("\n")[0].endswith(" bm25+round1")
        assert _try_cli(run_dir, *args, "--weight", "1").returncode == 0  # all dense
        assert _top_scores(hybrid, dense) == _top_scores(dense, dense, 3)
    finally:
        shutil.rmtree(tuned.parent)


def test_a_bad_queries_file_line_is_named(run_dir, tmp_path):
    queries = tmp_path / "q.tsv"
    queries.write_text("a\tsolar panels\nno tab here\n")
    proc = _try_cli(run_dir, "--system", "bm25", "--queries-file", str(queries))
    assert proc.returncode == 1 and f"{queries}:2: expected 'qid<TAB>query text'" in proc.stderr


def test_an_ivf_index_is_searched_with_nprobe(run_dir):
    folder = run_dir / "round1" / "tiny"
    pairs = [(folder / "emb" / f"shard{s}.npy", folder / "emb" / f"shard{s}.ids.txt") for s in range(2)]
    build_index(
        pairs, run_dir / "round1" / "model", folder / "index.faiss", folder / "index.json", IndexSettings("IVF4,Flat")
    )
    try:
        searcher = RoundSearcher(run_dir, 1, "tiny", nprobe=4)  # every list: exact
        assert faiss.extract_index_ivf(searcher.index).nprobe == 4
        hits = searcher.search("solar panels", k=5)
        assert [h.docid for h in hits] == _exact(run_dir, "solar panels").head(5).index.tolist()
        with pytest.raises(ValueError, match="nprobe 5 must be in"):
            RoundSearcher(run_dir, 1, "tiny", nprobe=5)
    finally:
        (folder / "index.faiss").unlink()
        (folder / "index.json").unlink()
