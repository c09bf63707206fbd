"""Templates that travel with the model: tokenization, dr_encoder.json, sentence-transformers prompts and
lengths, the model card; the older `model.template` key."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import REPO, snakemake_cmd

from dr_core.batching import Padder
from dr_core.model import BiEncoder, EncoderSpec, load_tokenizer
from dr_core.model_card import write_card
from dr_core.templates import check_template, format_passages, format_queries

E5 = {"query_template": "query: {text}", "passage_template": "passage: {title} {text}"}
E5["passage_template_untitled"] = "passage: {text}"


def test_templates_and_untitled_passages():
    titles, texts = ["A title", "", None], ["one", "two", "three"]
    assert format_passages(titles, texts, "Title: {title} Text: {text}") == ["Title: A title Text: one", "two", "three"]
    e5 = format_passages(titles, texts, E5["passage_template"], E5["passage_template_untitled"])
    assert e5 == ["passage: A title one", "passage: two", "passage: three"]
    assert format_queries(["why?"], "Represent this: {text}") == ["Represent this: why?"]


@pytest.mark.parametrize(
    "template, fields, found",
    [
        ("query: {txt}", {"text"}, "txt"),
        ("{title}", {"title", "text"}, "no {text}"),
        ("{title} {text}", {"text"}, "title"),
    ],
)
def test_a_template_with_an_unknown_field_names_its_key(template, fields, found):
    with pytest.raises(ValueError, match=f"model.query_template: .*{found}"):
        check_template(template, fields, "model.query_template")
    with pytest.raises(ValueError, match="model.passage_template"):
        EncoderSpec(passage_template="{titel} {text}")


def _ours(model: BiEncoder, tok, texts: list[str], max_len: int, is_query: bool) -> np.ndarray:
    """dr_core's embeddings of already formatted texts, as the tokenize and encode steps make them."""
    rows = [np.array(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"]]
    with torch.no_grad():
        return model.encode(**Padder(tok, max_len)(rows), is_query=is_query).numpy()


@pytest.fixture(scope="module")
def e5_model(tiny_bert, tmp_path_factory) -> Path:
    spec = EncoderSpec(pooling="mean", similarity="cosine", q_max_len=12, p_max_len=24, **E5)
    folder = tmp_path_factory.mktemp("e5") / "model"
    BiEncoder.from_base(str(tiny_bert), spec).save(folder, load_tokenizer(tiny_bert))
    write_card(folder, spec, {"recipe": "tiny", "base": "intfloat/e5-small", "dataset": "scifact", "round": 1})
    return folder


def test_sentence_transformers_prompts_give_our_embeddings(e5_model):
    from sentence_transformers import SentenceTransformer

    ours, tok = BiEncoder.load(e5_model).eval(), load_tokenizer(e5_model)
    assert json.loads((e5_model / "dr_encoder.json").read_text())["query_template"] == "query: {text}"
    st = SentenceTransformer(str(e5_model), device="cpu")
    assert st.prompts == {"query": "query: ", "document": "passage: "} and st.max_seq_length == 24
    short, long = "solar panels and cells", " ".join(["vaccine response study"] * 20)  # long: > 24 tokens
    mine = _ours(ours, tok, format_queries([short, long], "query: {text}"), 12, True)
    theirs = st.encode_query([short, long])
    assert np.allclose(mine[0], theirs[0], atol=1e-5)
    assert not np.allclose(mine[1], theirs[1], atol=1e-3)  # one max_seq_length: the card says so
    st.max_seq_length = 12
    assert np.allclose(mine[1], st.encode_query([long])[0], atol=1e-5)
    st.max_seq_length = 24
    titled = format_passages(["Solar power"], ["Photovoltaic cells convert sunlight."], E5["passage_template"])
    body = "Solar power Photovoltaic cells convert sunlight."  # the card's "{title} {text}"
    assert np.allclose(_ours(ours, tok, titled, 24, False), st.encode_document([body]), atol=1e-5)


def test_model_card_front_matter_and_inputs(e5_model):
    text = (e5_model / "README.md").read_text()
    meta = yaml.safe_load(text.split("---\n")[1])
    assert meta["library_name"] == "sentence-transformers" and meta["base_model"] == "intfloat/e5-small"
    assert meta["datasets"] == ["scifact"] and meta["pipeline_tag"] == "sentence-similarity"
    assert "# tiny, round 1" in text and "`query: {text}`, cut to 12 tokens" in text
    assert "model.max_seq_length = 12" in text and "pass `{title} {text}`.format(title=..., text=...)" in text
    assert "Not evaluated" in text


def _dry_run(tmp_path: Path, model: dict) -> subprocess.CompletedProcess:
    base = yaml.safe_load((REPO / "tests" / "fixtures" / "workflow_config.yaml").read_text())
    base["model"] = {**base.get("model", {}), **model}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(base))
    cmd = snakemake_cmd("-n", "--configfile", str(config), "--directory", str(tmp_path), "-p")
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)


def test_older_template_key_is_read_and_a_conflict_refused(tmp_path):
    proc = _dry_run(tmp_path, {"template": "{title} | {text}", "query_template": "q: {text}"})
    assert proc.returncode == 0, proc.stderr
    assert "--template='{title} | {text}'" in proc.stdout and "--template='q: {text}'" in proc.stdout
    proc = _dry_run(tmp_path, {"template": "{title} | {text}", "passage_template": "{title}: {text}"})
    assert proc.returncode != 0 and "model.template (older name of model.passage_template)" in proc.stdout
    proc = _dry_run(tmp_path, {"query_template": "query: {query}"})
    assert proc.returncode != 0 and "model.query_template: 'query: {query}' must use {text}" in proc.stdout


def test_train_step_writes_the_card_with_its_settings(tiny_bert, tmp_path):
    import sys

    from conftest import prepare_tokenized, train_cli_args

    d = prepare_tokenized(tiny_bert, tmp_path)
    spec = EncoderSpec(pooling="mean", q_max_len=16, p_max_len=48)
    BiEncoder.from_base(str(tiny_bert), spec).save(d / "init", load_tokenizer(tiny_bert))
    (d / "negs.tsv").write_text("q1\t1007,1014\n")
    settings = {"epochs": 1, "batch_size": 4, "group_size": 2, "lr": 1e-3}
    card = {"recipe": "tiny", "base": "pkg:cognition/model", "dataset": "tiny", "split": "train", "round": 2}
    card["negatives"] = "mined with the round-1 model"
    args = [*train_cli_args(d, "model", "ckpt", settings), "--card", json.dumps(card)]
    subprocess.run([sys.executable, "-m", *args], check=True, capture_output=True, cwd=REPO)
    text = (d / "model" / "README.md").read_text()
    assert "base_model" not in text.split("---\n")[1]  # a pkg: path is no Hub id
    assert "- ANCE round 2; negatives: mined with the round-1 model" in text
    assert "group_size `2`" in text and "lr `0.001`" in text and "`Title: {title} Text: {text}`" in text
