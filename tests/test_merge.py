"""WiSE-FT weight-space ensembling (dr_core.merge): a tuned bi-encoder interpolated with its base."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer
from transformers import AutoModel, BertConfig, BertModel

from dr_core.batching import Padder
from dr_core.cli import main
from dr_core.encode import embed
from dr_core.merge import interpolate_weights, merge_models
from dr_core.model import BiEncoder, EncoderSpec, load_tokenizer

SPEC = EncoderSpec(pooling="mean", similarity="dot", q_max_len=16, p_max_len=32, projection_dim=16)
TEXTS = ["solar panels and sunlight", "coffee", "whale songs in the ocean carry far"]


@pytest.fixture(scope="module")
def pair(tiny_bert, tmp_path_factory) -> tuple[Path, Path]:
    """(base, tuned): round 0 of the tiny BERT, and a copy with every weight moved by seeded noise (the tuned
    copy's tokenizer says model_max_length 77, to tell whose tokenizer a merge keeps)."""
    d = tmp_path_factory.mktemp("merge_pair")
    tok = load_tokenizer(tiny_bert)
    model = BiEncoder.from_base(str(tiny_bert), SPEC)
    model.save(d / "base", tok)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    tok.model_max_length = 77
    model.save(d / "tuned", tok)
    return d / "base", d / "tuned"


def _encode(folder: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(query, passage) embeddings of TEXTS by the bi-encoder saved in `folder`."""
    model, tok = BiEncoder.load(folder).eval(), load_tokenizer(folder)
    batch = Padder(tok, 32)([np.array(tok(t, add_special_tokens=False)["input_ids"]) for t in TEXTS])
    with torch.no_grad():
        return model.encode(**batch, is_query=True), model.encode(**batch, is_query=False)


def _leftovers(parent: Path, name: str) -> list[Path]:
    """`name` itself and any temporary sibling of it (`.name.*.tmp`) in `parent`."""
    return [p for p in parent.iterdir() if p.name == name or p.name.startswith(f".{name}.")]


@pytest.mark.parametrize("alpha, same_as", [(0.0, 0), (1.0, 1)])
def test_the_ends_encode_as_base_and_tuned(pair, tmp_path, alpha, same_as):
    merge_models(*pair, alpha, tmp_path / "m")
    merged, expected, other = _encode(tmp_path / "m"), _encode(pair[same_as]), _encode(pair[1 - same_as])
    for ours, theirs, not_theirs in zip(merged, expected, other):
        assert torch.equal(ours, theirs)
        assert not torch.allclose(ours, not_theirs)


def test_half_is_the_average_of_the_weights(pair, tmp_path):
    merge_models(*pair, 0.5, tmp_path / "m")
    base, tuned, merged = (BiEncoder.load(p).state_dict() for p in (*pair, tmp_path / "m"))
    assert merged.keys() == tuned.keys() and any(k.startswith("projection.") for k in merged)
    for key, w in merged.items():
        torch.testing.assert_close(w, (base[key] + tuned[key]) / 2, rtol=0, atol=1e-7, msg=key)
        assert not torch.equal(w, tuned[key]), key
    assert load_tokenizer(tmp_path / "m").model_max_length == 77  # the tuned model's tokenizer
    assert json.loads((tmp_path / "m" / "dr_encoder.json").read_text()) == json.loads(
        (pair[1] / "dr_encoder.json").read_text()
    )
    meta = json.loads((tmp_path / "m" / "dr_meta.json").read_text())["config"]
    assert (meta["alpha"], meta["base"], meta["tuned"]) == (0.5, str(pair[0]), str(pair[1]))
    plain = AutoModel.from_pretrained(tmp_path / "m").state_dict()  # plain transformers loads the tower
    for key, w in plain.items():
        torch.testing.assert_close(w, merged[f"query_model.{key}"], rtol=0, atol=0, msg=key)


def test_untied_towers_are_averaged_each(tiny_bert, tmp_path):
    spec = EncoderSpec(pooling="cls", untied=True, q_max_len=16, p_max_len=32)
    tok = load_tokenizer(tiny_bert)
    model = BiEncoder.from_base(str(tiny_bert), spec)
    model.save(tmp_path / "base", tok)
    with torch.no_grad():
        for i, p in enumerate(model.passage_model.parameters()):
            p.add_(0.01 * (i + 1))
    model.save(tmp_path / "tuned", tok)
    merge_models(tmp_path / "base", tmp_path / "tuned", 0.25, tmp_path / "m")
    base, tuned, merged = (BiEncoder.load(tmp_path / n).state_dict() for n in ("base", "tuned", "m"))
    assert any(k.startswith("passage_model.") for k in merged)
    for key, w in merged.items():
        torch.testing.assert_close(w, 0.75 * base[key] + 0.25 * tuned[key], rtol=0, atol=1e-7, msg=key)


def test_sentence_transformers_gives_the_bi_encoders_embeddings(pair, tmp_path):
    merge_models(*pair, 0.3, tmp_path / "m")
    model, tok = BiEncoder.load(tmp_path / "m"), load_tokenizer(tmp_path / "m")
    rows = [np.array(tok(t, add_special_tokens=False)["input_ids"]) for t in TEXTS]
    ours = embed(model, Padder(tok, 32), rows, False, 8)
    theirs = SentenceTransformer(str(tmp_path / "m"), device="cpu").encode(TEXTS, convert_to_numpy=True)
    assert theirs.shape == (len(TEXTS), SPEC.projection_dim)
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)
    assert not np.allclose(ours, embed(BiEncoder.load(pair[1]), Padder(tok, 32), rows, False, 8), atol=1e-3)


def test_other_specs_refuse_to_merge(pair, tiny_bert, tmp_path):
    other = EncoderSpec(**{**SPEC.__dict__, "pooling": "cls"})
    BiEncoder.from_base(str(tiny_bert), other).save(tmp_path / "cls_model", load_tokenizer(tiny_bert))
    with pytest.raises(ValueError, match="pooling") as e:
        merge_models(pair[0], tmp_path / "cls_model", 0.5, tmp_path / "m")
    assert str(pair[0]) in str(e.value) and str(tmp_path / "cls_model") in str(e.value)
    assert not _leftovers(tmp_path, "m")


def test_other_shapes_refuse_to_merge(pair, tiny_bert, tmp_path):
    config = BertConfig.from_pretrained(tiny_bert)
    config.intermediate_size = 48
    torch.manual_seed(0)
    BertModel(config).save_pretrained(tmp_path / "narrow_base")
    load_tokenizer(tiny_bert).save_pretrained(tmp_path / "narrow_base")
    BiEncoder.from_base(str(tmp_path / "narrow_base"), SPEC).save(tmp_path / "narrow", load_tokenizer(tiny_bert))
    with pytest.raises(ValueError, match=r"query_model\.encoder\.layer\.0\.intermediate\.dense\.weight") as e:
        merge_models(pair[0], tmp_path / "narrow", 0.5, tmp_path / "m")
    assert str(pair[0]) in str(e.value) and str(tmp_path / "narrow") in str(e.value)
    assert not _leftovers(tmp_path, "m")


@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan")])
def test_alpha_outside_zero_one_is_refused(pair, tmp_path, alpha):
    with pytest.raises(ValueError, match=r"merge\.alpha"):
        merge_models(*pair, alpha, tmp_path / "m")
    assert not _leftovers(tmp_path, "m")


def test_interpolation_keeps_dtypes_and_copies_integer_buffers():
    base = {"w": torch.tensor([1.0, 2.0], dtype=torch.bfloat16), "ids": torch.tensor([0, 1])}
    tuned = {"w": torch.tensor([3.0, 6.0], dtype=torch.bfloat16), "ids": torch.tensor([5, 7])}
    out = interpolate_weights(base, tuned, 0.25)
    assert out["w"].dtype == torch.bfloat16 and out["w"].tolist() == [1.5, 3.0]
    assert out["ids"].tolist() == [5, 7] and out["ids"].data_ptr() != tuned["ids"].data_ptr()
    assert base["w"].tolist() == [1.0, 2.0] and tuned["w"].tolist() == [3.0, 6.0]  # inputs untouched


def test_cli_step(pair, tmp_path):
    out = tmp_path / "m"
    argv = ["merge-models", "--base", str(pair[0]), "--tuned", str(pair[1]), "--out", str(out)]
    assert main([*argv, "--alpha", "1.5"]) == 1
    assert not _leftovers(tmp_path, "m")
    assert main([*argv, "--alpha", "0.25"]) == 0
    meta = json.loads((out / "dr_meta.json").read_text())["config"]
    assert (meta["command"], meta["alpha"], meta["base"], meta["tuned"]) == ("merge-models", 0.25, *map(str, pair))
    base, tuned, merged = (BiEncoder.load(p).state_dict() for p in (*pair, out))
    for key, w in merged.items():
        torch.testing.assert_close(w, 0.75 * base[key] + 0.25 * tuned[key], rtol=0, atol=1e-7, msg=key)
    assert BiEncoder.load(out).spec == SPEC and load_tokenizer(out).model_max_length == 77
