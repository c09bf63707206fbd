import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from dr_core.batching import Padder
from dr_core.bm25 import bm25_search
from dr_core.data.beir import prepare_collection
from dr_core.encode import EncodeSettings, embed, encode_corpus_shard, shard_bounds
from dr_core.model import BiEncoder, EncoderSpec, load_tokenizer
from dr_core.templates import format_passages
from dr_core.tokenization import TokenizeSettings, TokenStore, tokenize_table


def test_template_and_missing_titles():
    out = format_passages(["A title", "", None], ["body one", "body two", "body three"], "Title: {title} Text: {text}")
    assert out == ["Title: A title Text: body one", "body two", "body three"]


def test_tokenize_table_round_trip_and_truncation(tiny_bert, tiny_beir, tmp_path):
    prepare_collection(tiny_beir, tmp_path)
    tok = load_tokenizer(tiny_bert)
    settings = TokenizeSettings(12, "Title: {title} Text: {text}", batch_size=7)
    n = tokenize_table(tmp_path / "corpus.parquet", tmp_path / "t.parquet", tok, "id", settings)
    corpus = pd.read_parquet(tmp_path / "corpus.parquet")
    store = TokenStore(tmp_path / "t.parquet")
    assert n == len(store) == 48 and store.ids == corpus["id"].tolist()
    assert store.lengths.max() == 10  # 12 minus [CLS] and [SEP]
    first = corpus.iloc[0]
    expected = tok(f"Title: {first['title']} Text: {first['text']}", add_special_tokens=False)["input_ids"][:10]
    assert store[first["id"]].tolist() == expected
    assert "nope" not in store
    assert pq.read_metadata(tmp_path / "t.parquet").num_row_groups == 7  # 7 rows each, the last 6
    for start, end in ((0, 48), (5, 19), (7, 14), (40, 48), (20, 20)):
        part = TokenStore(tmp_path / "t.parquet", rows=(start, end))
        assert part.ids == store.ids[start:end]
        assert all(part.by_row(i).tolist() == store.by_row(start + i).tolist() for i in range(len(part)))


def test_bm25_ranks_the_topic_passages_first(tiny_beir, tmp_path):
    prepare_collection(tiny_beir, tmp_path)
    corpus = pd.read_parquet(tmp_path / "corpus.parquet")
    queries = pd.DataFrame({"qid": ["a", "b"], "text": ["volcano lava eruption", "piano concert practice"]})
    ids, scores = bm25_search(corpus, queries, k=60)
    assert ids.shape == (2, 60) and (ids[:, 48:] == "").all()
    text = dict(zip(corpus["id"], (corpus["title"] + " " + corpus["text"]).str.lower()))
    for row, words in ((0, ("volcan", "lava", "magma", "eruption")), (1, ("piano", "concert", "practice"))):
        assert all(any(w in text[d] for w in words) for d in ids[row, :4])
    assert np.all(np.diff(scores[:, :48], axis=1) <= 1e-6)


@pytest.mark.parametrize("n, shards", [(10, 3), (48, 2), (5, 5)])
def test_shard_bounds_partition_rows(n, shards):
    bounds = [shard_bounds(n, s, shards) for s in range(shards)]
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    with pytest.raises(ValueError):
        shard_bounds(n, shards, shards)


def test_embed_keeps_input_order_and_matches_unbatched(tiny_bert):
    tok = load_tokenizer(tiny_bert)
    model = BiEncoder.from_base(str(tiny_bert), EncoderSpec(pooling="mean", p_max_len=32)).eval()
    rows = [
        np.array(tok(t, add_special_tokens=False)["input_ids"])
        for t in ["a b c d e f", "solar", "whale song ocean", "x"]
    ]
    padder = Padder(tok, 32)
    batched = embed(model, padder, rows, is_query=False, batch_size=3)
    with torch.no_grad():
        single = np.stack([model.encode(**padder([r]), is_query=False)[0].numpy() for r in rows])
    np.testing.assert_allclose(batched, single, rtol=1e-4, atol=1e-5)


def test_encode_corpus_shards_cover_the_corpus(tiny_bert, tiny_beir, tmp_path):
    prepare_collection(tiny_beir, tmp_path)
    tok = load_tokenizer(tiny_bert)
    tokenize_table(
        tmp_path / "corpus.parquet", tmp_path / "t.parquet", tok, "id", TokenizeSettings(32, "{title} {text}")
    )
    BiEncoder.from_base(str(tiny_bert), EncoderSpec(p_max_len=32)).save(tmp_path / "m", tok)
    ids = []
    for s in range(3):
        shard = (tmp_path / f"e{s}.npy", tmp_path / f"e{s}.ids")
        encode_corpus_shard(tmp_path / "m", tmp_path / "t.parquet", s, 3, *shard, EncodeSettings(batch_size=8))
        emb = np.load(tmp_path / f"e{s}.npy")
        shard_ids = (tmp_path / f"e{s}.ids").read_text().splitlines()
        assert emb.shape == (len(shard_ids), 32) and emb.dtype == np.float32
        ids += shard_ids
    assert ids == TokenStore(tmp_path / "t.parquet").ids


@pytest.mark.slow
def test_a_compiled_encode_gives_the_uncompiled_embeddings(tiny_bert, tiny_beir, tmp_path):
    """encode.compile: the shard is embedded through compiled graphs (dynamo compiled some), and the embeddings
    equal the uncompiled ones within float tolerance."""
    from torch._dynamo.utils import counters

    prepare_collection(tiny_beir, tmp_path)
    tok = load_tokenizer(tiny_bert)
    tokenize_table(
        tmp_path / "corpus.parquet", tmp_path / "t.parquet", tok, "id", TokenizeSettings(32, "{title} {text}")
    )
    BiEncoder.from_base(str(tiny_bert), EncoderSpec(p_max_len=32)).save(tmp_path / "m", tok)
    embeddings, graphs = {}, {}
    for flag in (False, True):
        before = counters["stats"]["unique_graphs"]
        out = (tmp_path / f"e{flag}.npy", tmp_path / f"e{flag}.ids")
        encode_corpus_shard(tmp_path / "m", tmp_path / "t.parquet", 0, 1, *out, EncodeSettings(8, compile=flag))
        embeddings[flag], graphs[flag] = np.load(out[0]), counters["stats"]["unique_graphs"] - before
    assert graphs == {False: 0, True: graphs[True]} and graphs[True] > 0
    assert np.allclose(embeddings[True], embeddings[False], atol=1e-5)
