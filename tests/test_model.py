import numpy as np
import pytest
import torch
from transformers import AutoModel

from dr_core.batching import Padder, special_tokens
from dr_core.encode import embed
from dr_core.model import BiEncoder, EncoderSpec, load_tokenizer, resolve_model_path


def _batch(tok, texts, max_len=32):
    rows = [np.array(tok(t, add_special_tokens=False)["input_ids"]) for t in texts]
    return Padder(tok, max_len)(rows)


@pytest.mark.parametrize("pooling, similarity", [("cls", "dot"), ("mean", "cosine")])
def test_save_load_round_trip_and_plain_transformers(tiny_bert, tmp_path, pooling, similarity):
    spec = EncoderSpec(pooling=pooling, similarity=similarity, q_max_len=16, p_max_len=32)
    model = BiEncoder.from_base(str(tiny_bert), spec).eval()
    tok = load_tokenizer(tiny_bert)
    model.save(tmp_path / "m", tok)
    again = BiEncoder.load(tmp_path / "m").eval()
    assert again.spec == spec
    batch = _batch(tok, ["solar panels and sunlight", "coffee"])
    with torch.no_grad():
        a = model.encode(**batch, is_query=False)
        b = again.encode(**batch, is_query=False)
        hidden = AutoModel.from_pretrained(tmp_path / "m")(**batch).last_hidden_state
    torch.testing.assert_close(a, b)
    if pooling == "cls":
        torch.testing.assert_close(a, hidden[:, 0])
    else:
        assert torch.allclose(a.norm(dim=-1), torch.ones(2))


@pytest.mark.parametrize(
    "pooling, similarity, projection",
    [("cls", "dot", None), ("mean", "cosine", None), ("mean", "cosine", 8), ("cls", "dot", 24)],
)
def test_sentence_transformers_loads_the_same_embeddings(tiny_bert, tmp_path, pooling, similarity, projection):
    import sentence_transformers as st  # a required test dependency (the models extra): missing, this fails

    spec = EncoderSpec(pooling=pooling, similarity=similarity, q_max_len=16, p_max_len=32, projection_dim=projection)
    torch.manual_seed(1)
    model = BiEncoder.from_base(str(tiny_bert), spec).eval()
    tok = load_tokenizer(tiny_bert)
    model.save(tmp_path / "m", tok)
    texts = ["whale songs in the ocean", "chess endgame"]
    ours = embed(
        model, Padder(tok, 32), [np.array(tok(t, add_special_tokens=False)["input_ids"]) for t in texts], False, 8
    )
    theirs = st.SentenceTransformer(str(tmp_path / "m"), device="cpu").encode(texts, convert_to_numpy=True)
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)
    assert theirs.shape == (2, projection or 32)


def test_gradient_checkpointing_keeps_the_gradients(tiny_bert):
    tok = load_tokenizer(tiny_bert)
    batch = _batch(tok, ["solar panels and sunlight", "coffee beans"])
    grads = []
    for checkpointing in (False, True):
        model = BiEncoder.from_base(str(tiny_bert), EncoderSpec(pooling="mean", untied=True)).eval()
        if checkpointing:
            model.gradient_checkpointing_enable()
        q, p = model(batch, batch)
        (q @ p.T).logsumexp(-1).sum().backward()
        grads.append({n: w.grad for n, w in model.named_parameters() if w.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 10
    for name, g in grads[0].items():
        torch.testing.assert_close(g, grads[1][name], rtol=1e-5, atol=1e-6)
    assert not any("pooler" in n for n in grads[0])  # frozen: DDP must not wait on it


def test_untied_towers_differ_after_divergence(tiny_bert, tmp_path):
    spec = EncoderSpec(untied=True, projection_dim=8, q_max_len=16, p_max_len=32)
    model = BiEncoder.from_base(str(tiny_bert), spec)
    with torch.no_grad():
        for p in model.passage_model.parameters():
            p.add_(0.1)
    tok = load_tokenizer(tiny_bert)
    model.save(tmp_path / "m", tok)
    again = BiEncoder.load(tmp_path / "m").eval()
    batch = _batch(tok, ["bees and honey"])
    with torch.no_grad():
        q, p = again.encode(**batch, is_query=True), again.encode(**batch, is_query=False)
        torch.testing.assert_close(p, model.eval().encode(**batch, is_query=False))
    assert q.shape == (1, 8) and not torch.allclose(q, p)


def test_special_tokens_and_truncation(tiny_bert):
    tok = load_tokenizer(tiny_bert)
    prefix, suffix = special_tokens(tok)
    assert prefix == [tok.cls_token_id] and suffix == [tok.sep_token_id]
    out = Padder(tok, 6)([np.arange(10, 20), np.array([11])])
    assert out["input_ids"].tolist() == [
        [tok.cls_token_id, 10, 11, 12, 13, tok.sep_token_id],
        [tok.cls_token_id, 11, tok.sep_token_id, tok.pad_token_id, tok.pad_token_id, tok.pad_token_id],
    ]
    assert out["attention_mask"].sum(1).tolist() == [6, 3]


def test_package_model_path_and_errors():
    assert resolve_model_path("bert-base-uncased") == "bert-base-uncased"
    with pytest.raises(FileNotFoundError):
        resolve_model_path("pkg:dr_core/no_such_model")
    with pytest.raises(ValueError, match="model.pooling"):
        EncoderSpec(pooling="max")


def test_attention_dropout_sets_only_the_attention_probabilities_and_not_the_saved_config(tiny_bert, tmp_path):
    tok = load_tokenizer(tiny_bert)
    batch = _batch(tok, ["solar panels and sunlight", "coffee beans are roasted"])

    def two_passes(attention_dropout: float | None) -> tuple[torch.Tensor, torch.Tensor]:
        model = BiEncoder.from_base(str(tiny_bert), EncoderSpec(pooling="mean")).train()
        if attention_dropout is not None:
            model.set_attention_dropout(attention_dropout)
        attention = {id(m.dropout) for m in model.modules() if type(m).__name__ == "BertSelfAttention"}
        assert len(attention) == 2  # one a layer
        for m in model.modules():  # the hidden (not attention) dropout off, to see the other alone
            if isinstance(m, torch.nn.Dropout) and id(m) not in attention:
                m.p = 0.0
        torch.manual_seed(0)
        return model.encode(**batch, is_query=False), model.encode(**batch, is_query=False)

    first, second = two_passes(None)  # the model's own attention dropout (0.1) is still drawn: passes differ
    assert not torch.allclose(first, second)
    first, second = two_passes(0.0)
    torch.testing.assert_close(first, second, rtol=0, atol=0)

    model = BiEncoder.from_base(str(tiny_bert), EncoderSpec(pooling="mean"))
    model.set_attention_dropout(0.0)
    model.save(tmp_path / "m", tok)
    assert AutoModel.from_pretrained(tmp_path / "m").config.attention_probs_dropout_prob == 0.1


def test_attention_dropout_is_refused_clearly_where_there_is_no_self_attention_dropout():
    from transformers import T5Config, T5EncoderModel

    t5 = T5EncoderModel(T5Config(vocab_size=64, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2))
    with pytest.raises(ValueError, match="train.attention_dropout: this t5 model has no BERT-style attention dropout"):
        BiEncoder(t5, None, EncoderSpec()).set_attention_dropout(0.0)
