"""LoRA (train.lora): adapters only are trained, the loss goes down, the saved folder is a plain merged model,
an interrupted run resumes to the same weights, bad settings name their key."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import prepare_tokenized

from dr_core.lora import LoraSettings, trainable_parameters
from dr_core.model import BiEncoder, EncoderSpec, load_tokenizer
from dr_core.train import Trainer, TrainSettings
from dr_core.train_data import TrainingData

LORA = {"r": 4, "alpha": 8.0, "dropout": 0.0, "target_modules": ["query", "key", "value", "dense"]}


@pytest.fixture()
def d(tiny_bert, tmp_path):
    prepare_tokenized(tiny_bert, tmp_path)
    spec = EncoderSpec(pooling="mean", q_max_len=16, p_max_len=48)
    BiEncoder.from_base(str(tiny_bert), spec).save(tmp_path / "init", load_tokenizer(tiny_bert))
    return tmp_path


def _trainer(d, ckpt="ckpt", **changes) -> Trainer:
    settings = dict(epochs=10, batch_size=4, group_size=3, lr=1e-2, temperature=0.1, warmup_ratio=0.0, lora=LORA)
    qrels = pd.read_parquet(d / "qrels.parquet")
    negatives = {"q1": ["1007", "1014"], "q3": ["1021"]}
    data = TrainingData(d / "tq.parquet", d / "tc.parquet", qrels, negatives)
    return Trainer(d / "init", data, TrainSettings(**{**settings, **changes}), d / ckpt)


def _embed(model: BiEncoder, d) -> np.ndarray:
    tok = load_tokenizer(d / "init")
    batch = tok(["solar panels and cells", "vaccine response"], padding=True, return_tensors="pt")
    with torch.no_grad():
        return model.eval().encode(batch["input_ids"], batch["attention_mask"], is_query=False).numpy()


def test_only_the_adapters_train_the_loss_falls_and_the_merged_model_reloads(d):
    trainer = _trainer(d)
    config = trainer.task.model.query_model.config
    h, i, r = config.hidden_size, config.intermediate_size, 4
    per_layer = 4 * r * (h + h) + r * (h + i) + r * (i + h)  # q, k, v, attention out; intermediate; output
    assert trainable_parameters(trainer.task.model) == config.num_hidden_layers * per_layer  # not the pooler's
    trainer.task.dataset.set_epoch(0)  # the same groups before and after
    before = trainer.evaluate(trainer.task.dataset)
    trainer.train(d / "model", d / "log.csv")
    trainer.task.dataset.set_epoch(0)
    assert trainer.evaluate(trainer.task.dataset) < 0.7 * before  # 0.48 measured (full fine-tuning, lr 1e-3: 0.36)
    assert not (d / "model" / "adapter_config.json").exists()  # a plain transformer, adapters merged
    reloaded = BiEncoder.load(d / "model")
    assert np.allclose(_embed(trainer.task.model, d), _embed(reloaded, d), atol=1e-6)
    init = BiEncoder.load(d / "init").state_dict()
    changed = {k for k, v in reloaded.state_dict().items() if not torch.equal(v, init[k])}
    assert changed and all(k.endswith(".weight") and "pooler" not in k and "embeddings" not in k for k in changed)
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(d / "model"), device="cpu")
    assert np.allclose(st.encode_document(["solar panels and cells"]), _embed(reloaded, d)[:1], atol=1e-5)


class _Stop(Exception):
    pass


def test_an_interrupted_lora_run_resumes_to_the_same_weights(d):
    common = dict(max_steps=8, checkpoint_every=4)
    _trainer(d, "ck_a", **common).train(d / "a", d / "a.csv")
    b = _trainer(d, "ck_b", **common)
    save = b.save_checkpoint

    def save_then_stop() -> None:
        save()
        raise _Stop

    b.save_checkpoint = save_then_stop
    with pytest.raises(_Stop):
        b.train(d / "b", d / "b.csv")
    resumed = _trainer(d, "ck_b", **common)
    assert resumed.maybe_resume() and resumed.step == 4
    resumed.train(d / "b", d / "b.csv")
    a, b = BiEncoder.load(d / "a").state_dict(), BiEncoder.load(d / "b").state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


@pytest.mark.parametrize(
    "lora, message",
    [
        ({"r": 4, "target_modules": ["qurey"]}, "train.lora.target_modules: no Linear layer 'qurey'"),
        ({"rank": 4}, r"train.lora: unknown keys \['rank'\]"),
        ({"r": 0}, "train.lora: r >= 1"),
    ],
)
def test_bad_lora_settings_name_their_key(d, lora, message):
    with pytest.raises(ValueError, match=message):
        _trainer(d, lora=lora)


def test_lora_settings_defaults_are_the_schemas_and_a_recipe_validates(tmp_path):
    """The schema gives train.lora's keys no `default:` (Snakemake would fill them into a null lora): their
    descriptions state LoraSettings' defaults; a recipe setting only r validates and reaches the train step."""
    import dataclasses
    import subprocess

    import yaml
    from conftest import REPO, snakemake_cmd

    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    keys = schema["properties"]["train"]["properties"]["lora"]["properties"]
    for f in dataclasses.fields(LoraSettings):
        assert "default" not in keys[f.name]
        said = "null:" if f.default is None else f"(default {f.default})"
        assert said in keys[f.name]["description"], f.name
    config = yaml.safe_load((REPO / "tests" / "fixtures" / "workflow_config.yaml").read_text())
    config.setdefault("train", {})["lora"] = {"r": 4}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    cmd = snakemake_cmd("-n", "-p", "--configfile", str(tmp_path / "c.yaml"), "--directory", str(tmp_path))
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert "'--lora={\"r\": 4}'" in proc.stdout
