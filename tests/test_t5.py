"""T5 the OpenMatch way: decoder-first-token and encoder-only pooling, the weight scaling, training, saving."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import _texts, prepare_tokenized, train_cli_args
from test_workflow import snakemake, write_config

from dr_core.batching import Padder
from dr_core.model import BiEncoder, EncoderSpec, load_tokenizer
from dr_core.t5 import scale_t5_model, scaled_t5_weights

TEXTS = ["solar panels and sunlight", "coffee", "whale songs in the deep ocean"]


@pytest.fixture(scope="module")
def tiny_t5(tmp_path_factory) -> Path:
    """A 2-layer, d_model 32 T5 (random init, seeded, ReLU feed-forward) saved as T5ForConditionalGeneration, as
    t5-base is, with a WordPiece tokenizer trained on the fixture text: pad 0 (the decoder start), eos 1 after
    every text, unk 2."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration

    path = tmp_path_factory.mktemp("tiny_t5")
    tok = Tokenizer(models.WordPiece(unk_token="<unk>"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(
        _texts(), trainers.WordPieceTrainer(vocab_size=400, special_tokens=["<pad>", "</s>", "<unk>"])
    )
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    ).save_pretrained(path)
    torch.manual_seed(0)
    config = T5Config(
        vocab_size=tok.get_vocab_size(), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
        decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
    )  # fmt: skip
    T5ForConditionalGeneration(config).save_pretrained(path)
    return path


def _batch(tok, texts: list[str], max_len: int = 32) -> dict[str, torch.Tensor]:
    rows = [np.array(tok(t, add_special_tokens=False)["input_ids"]) for t in texts]
    return Padder(tok, max_len)(rows)


def _embed(model: BiEncoder, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return model.eval().encode(**batch, is_query=False)


def _by_hand(path: Path, batch: dict[str, torch.Tensor], pooling: str) -> torch.Tensor:
    """The embedding computed with transformers' full T5, its encoder and decoder stacks called one by one."""
    from transformers import T5ForConditionalGeneration

    t5 = T5ForConditionalGeneration.from_pretrained(path).eval()
    mask = batch["attention_mask"]
    with torch.no_grad():
        enc = t5.encoder(input_ids=batch["input_ids"], attention_mask=mask).last_hidden_state
        if pooling == "cls":
            return enc[:, 0]
        if pooling == "mean":
            return (enc * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        start = torch.zeros(len(mask), 1, dtype=torch.long)  # T5's decoder start token is its pad, id 0
        dec = t5.decoder(input_ids=start, encoder_hidden_states=enc, encoder_attention_mask=mask)
        return dec.last_hidden_state[:, 0]


@pytest.mark.parametrize("pooling", ["first_decoder", "cls", "mean"])
def test_each_pooling_is_the_vector_transformers_gives(tiny_t5, pooling):
    tok = load_tokenizer(tiny_t5)
    batch = _batch(tok, TEXTS)
    assert batch["input_ids"][1, 1] == 1 and batch["attention_mask"][1].sum() == 2  # "coffee </s>", padded
    model = BiEncoder.from_base(str(tiny_t5), EncoderSpec(pooling=pooling))
    ours = _embed(model, batch)
    torch.testing.assert_close(ours, _by_hand(tiny_t5, batch, pooling))
    assert ours.shape == (3, 32) and ours.std(0).min() > 1e-3  # the texts get different vectors
    encoder_only = pooling != "first_decoder"
    assert type(model.query_model).__name__ == ("T5EncoderModel" if encoder_only else "T5Model")


@pytest.mark.parametrize(
    "pooling, similarity, untied, projection",
    [("first_decoder", "dot", False, None), ("first_decoder", "cosine", True, 8), ("mean", "cosine", False, 16)],
)
def test_save_and_reload_give_the_same_embeddings(tiny_t5, tmp_path, pooling, similarity, untied, projection):
    spec = EncoderSpec(pooling=pooling, similarity=similarity, untied=untied, projection_dim=projection)
    model = BiEncoder.from_base(str(tiny_t5), spec)
    tok = load_tokenizer(tiny_t5)
    model.save(tmp_path / "m", tok)
    again = BiEncoder.load(tmp_path / "m")
    assert again.spec == spec
    for is_query in (True, False):
        batch = _batch(tok, TEXTS)
        with torch.no_grad():
            torch.testing.assert_close(
                model.eval().encode(**batch, is_query=is_query), again.eval().encode(**batch, is_query=is_query)
            )
    # sentence-transformers cannot pool a decoder state: no module files that would make it load something else
    assert (tmp_path / "m" / "modules.json").exists() == (pooling != "first_decoder" and not untied)


@pytest.mark.parametrize("pooling, similarity", [("cls", "dot"), ("mean", "cosine")])
def test_sentence_transformers_loads_encoder_only_t5_with_the_same_embeddings(tiny_t5, tmp_path, pooling, similarity):
    import sentence_transformers as st  # a required test dependency (the models extra): missing, this fails

    spec = EncoderSpec(pooling=pooling, similarity=similarity, q_max_len=16, p_max_len=32)
    model = BiEncoder.from_base(str(tiny_t5), spec)
    tok = load_tokenizer(tiny_t5)
    model.save(tmp_path / "m", tok)
    theirs = st.SentenceTransformer(str(tmp_path / "m"), device="cpu").encode(TEXTS, convert_to_numpy=True)
    np.testing.assert_allclose(_embed(model, _batch(tok, TEXTS)).numpy(), theirs, rtol=1e-4, atol=1e-5)


def test_decoder_pooling_on_an_encoder_only_model_names_the_key(tiny_bert):
    with pytest.raises(ValueError, match=r"model\.pooling 'first_decoder' needs an encoder-decoder model"):
        BiEncoder.from_base(str(tiny_bert), EncoderSpec(pooling="first_decoder"))
    with pytest.raises(ValueError, match=r"model\.pooling must be one of cls, mean, first_decoder, not 'first'"):
        EncoderSpec(pooling="first")


@pytest.mark.parametrize("pooling", ["first_decoder", "mean"])
def test_the_model_cards_plain_transformers_code_gives_the_embedding(tiny_t5, tmp_path, pooling):
    from dr_core.model_card import write_card

    spec = EncoderSpec(pooling=pooling, q_max_len=16)
    model = BiEncoder.from_base(str(tiny_t5), spec)
    model.save(tmp_path, load_tokenizer(tiny_t5))
    card = write_card(tmp_path, spec, {"recipe": "t5", "base": "t5-base", "path": str(tmp_path)}).read_text()
    if pooling == "mean":  # sentence-transformers loads it; plain transformers needs the encoder-only class
        assert "library_name: sentence-transformers" in card and "`T5EncoderModel.from_pretrained(folder)`" in card
        return
    assert "library_name: transformers" in card and "cannot express" in card
    code = card.split("```python\n")[1].split("```")[0]
    scope: dict = {}
    exec(code, scope)  # the card's snippet, as a user would run it
    query = _embed(model, _batch(load_tokenizer(tiny_t5), ["what causes scurvy"], 16))
    torch.testing.assert_close(scope["emb"], query)


def _state(feed_forward: tuple[str, ...] = ("wi", "wo")) -> dict[str, torch.Tensor]:
    """A hand-built 2-layer T5 state dict of ones: every weight OpenMatch scales, and some it does not."""
    names = ["shared.weight", "encoder.final_layer_norm.weight"]
    for i in range(2):
        names += [f"encoder.block.{i}.layer.0.SelfAttention.{m}.weight" for m in "qkvo"]
        names += [f"encoder.block.{i}.layer.1.DenseReluDense.{m}.weight" for m in feed_forward]
        names += [f"decoder.block.{i}.layer.0.SelfAttention.{m}.weight" for m in "qkvo"]
        names += [f"decoder.block.{i}.layer.1.EncDecAttention.{m}.weight" for m in "qkvo"]
        names += [f"decoder.block.{i}.layer.2.DenseReluDense.{m}.weight" for m in feed_forward]
    return {name: torch.ones(2, 2) for name in names}


def test_scaling_divides_what_openmatch_divides():
    state = _state()
    scaled = scaled_t5_weights(state, 2, 2)
    # OpenMatch's scripts/scale_t5_weights.py, per layer i, and shared.weight / 100
    expected = {"shared.weight": 100}
    for i in range(2):
        expected[f"encoder.block.{i}.layer.0.SelfAttention.o.weight"] = 100
        expected[f"encoder.block.{i}.layer.1.DenseReluDense.wi.weight"] = 10
        expected[f"encoder.block.{i}.layer.1.DenseReluDense.wo.weight"] = 10
        expected[f"decoder.block.{i}.layer.1.EncDecAttention.o.weight"] = 100
        expected[f"decoder.block.{i}.layer.0.SelfAttention.o.weight"] = 100
        expected[f"decoder.block.{i}.layer.2.DenseReluDense.wi.weight"] = 10
        expected[f"decoder.block.{i}.layer.2.DenseReluDense.wo.weight"] = 10
    assert {name: round(1 / float(t[0, 0])) for name, t in scaled.items()} == expected
    assert all(float(t.min()) == 1.0 for t in state.values())  # the input is left as it was
    with pytest.raises(ValueError, match=r"model\.scale_t5_weights: the model has no encoder\.block\.0\.layer\.1"):
        scaled_t5_weights(_state(("wi_0", "wi_1", "wo")), 2, 2)  # T5 v1.1's gated feed-forward


def test_scaled_t5_keeps_its_embeddings_and_refuses_other_models(tiny_t5, tiny_bert, tmp_path):
    from transformers import T5Model

    scale_t5_model(str(tiny_t5), tmp_path / "scaled")
    base, scaled = T5Model.from_pretrained(tiny_t5), T5Model.from_pretrained(tmp_path / "scaled")
    torch.testing.assert_close(scaled.shared.weight, base.shared.weight / 100)
    assert scaled.encoder.embed_tokens.weight is scaled.shared.weight  # the embedding stays tied
    wo = "decoder.block.1.layer.2.DenseReluDense.wo.weight"
    torch.testing.assert_close(scaled.state_dict()[wo], base.state_dict()[wo] / 10)
    # The RMS norms undo the 1/100 of the residual stream: the same embeddings, up to the norms' epsilon.
    tok = load_tokenizer(tmp_path / "scaled")
    for pooling in ("first_decoder", "mean"):
        spec = EncoderSpec(pooling=pooling)
        a, b = (_embed(BiEncoder.from_base(str(p), spec), _batch(tok, TEXTS)) for p in (tiny_t5, tmp_path / "scaled"))
        change = float(((a - b).norm(dim=1) / a.norm(dim=1)).max())
        assert change < 0.02, pooling  # measured 0.3-0.7%; leaving wo unscaled changes them by over 90%
    with pytest.raises(ValueError, match=r"model\.scale_t5_weights: .* is a bert, not a T5"):
        scale_t5_model(str(tiny_bert), tmp_path / "bert")
    assert not (tmp_path / "bert").exists()


def test_t5_trains_through_the_cli(tiny_t5, tmp_path):
    d = prepare_tokenized(tiny_t5, tmp_path)
    tok = load_tokenizer(tiny_t5)
    BiEncoder.from_base(str(tiny_t5), EncoderSpec(pooling="first_decoder", q_max_len=16, p_max_len=48)).save(
        d / "init", tok
    )
    (d / "negs.tsv").write_text("q1\t1007,1014\nq3\t1021\n")
    settings = {"max_steps": 6, "batch_size": 4, "group_size": 3, "lr": 1e-3, "log_every": 1, "warmup_ratio": 0.0}
    cmd = [sys.executable, "-m", *train_cli_args(d, "model", "ckpt", settings)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    losses = [float(row["loss"]) for row in csv.DictReader(open(d / "model.csv"))]
    assert len(losses) == 6 and all(map(math.isfinite, losses)) and len(set(losses)) > 1
    trained, init = BiEncoder.load(d / "model"), BiEncoder.load(d / "init")
    batch = _batch(tok, TEXTS)
    assert not torch.allclose(_embed(trained, batch), _embed(init, batch))
    assert json.loads((d / "model" / "dr_encoder.json").read_text())["pooling"] == "first_decoder"


def test_decoder_pooling_on_a_bert_fails_in_the_workflow_and_leaves_no_model(tmp_path):
    config = write_config(tmp_path, **{"model.pooling": "first_decoder"})  # the fixture's base is a BERT
    target = "results/tiny/round0/model"
    proc = snakemake("--cores", "1", "--configfile", str(config), "--directory", str(tmp_path), target, check=False)
    assert proc.returncode != 0 and not (tmp_path / target).exists()
    log = (tmp_path / "results/tiny/logs/model/round0.log").read_text()
    assert "model.pooling 'first_decoder' needs an encoder-decoder model such as T5" in log


@pytest.mark.slow
def test_scaled_t5_recipe_runs_end_to_end_on_the_fixture(tiny_t5, tmp_path):
    changes = {"model.base": str(tiny_t5), "model.pooling": "first_decoder", "model.scale_t5_weights": True}
    config = write_config(tmp_path, **changes, **{"ance.rounds": 1, "train.epochs": 1, "encode.num_shards": 1})
    targets = [f"results/tiny/round{r}/tiny/metrics.test.json" for r in (0, 1)]  # no BM25, report or cards
    snakemake("--cores", "2", *targets, "--configfile", str(config), "--directory", str(tmp_path))
    out = tmp_path / "results" / "tiny"
    for target in targets:
        assert 0 <= json.loads((tmp_path / target).read_text())["metrics"]["ndcg@10"] <= 1
    scaled = out / "base_model" / "t5_scaled"
    round0 = BiEncoder.load(out / "round0" / "model")
    assert round0.spec.pooling == "first_decoder" and not (out / "round0" / "model" / "modules.json").exists()
    from transformers import T5Model

    torch.testing.assert_close(round0.query_model.shared.weight, T5Model.from_pretrained(scaled).shared.weight)
