"""`python -m dr_core try`: a typed query against a round's corpus embeddings or its saved index."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import REPO, prepare_tokenized

from dr_core.batching import Padder
from dr_core.encode import encode_corpus_shard
from dr_core.index import build_index
from dr_core.model import BiEncoder, EncoderSpec, load_tokenizer
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
        encode_corpus_shard(model, data / "tc.parquet", s, 2, emb / f"shard{s}.npy", emb / f"shard{s}.ids.txt")
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
    build_index(pairs, run_dir / "round1" / "model", folder / "index.faiss", folder / "index.json", "Flat")
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
