"""The cross-encoder reranker: training on the generic loop (and resuming), the saved model in
sentence-transformers' CrossEncoder, bad models refused, and the rerank rule through Snakemake."""

import csv
import dataclasses
import json
import logging
import subprocess

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import FIXTURES, REPO, copy_run, rerank_groups, snakemake_cmd, snakemake_in
from safetensors.torch import load_file
from sentence_transformers import CrossEncoder

from dr_core import cli
from dr_core.cross_encoder import IDENTITY, cross_encoder_scores
from dr_core.reranker import RerankerSettings, RerankerTrainer, rerank
from dr_core.runs import read_trec
from dr_core.train_data import TrainingData

TEMPLATE = "{title}. {text}"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The tiny collection's train split, with 7 hard negatives per query."""
    return rerank_groups(tmp_path_factory.mktemp("rerank_data"), 7)


def _trainer(tiny_bert, data, out_ckpt, **changes):
    d, qrels, negatives = data
    settings = dict(batch_size=4, group_size=4, lr=1e-3, warmup_ratio=0.0, max_len=64, log_every=1)
    settings = RerankerSettings(**{**settings, **changes})
    data = TrainingData(d / "queries.parquet", d / "corpus.parquet", qrels, negatives)
    return RerankerTrainer(str(tiny_bert), data, TEMPLATE, settings, out_ckpt)


def _positive_first(trainer) -> float:
    """Share of the epoch-0 groups whose positive (index 0) gets the highest logit."""
    task = trainer.task
    task.dataset.set_epoch(0)
    inputs, ids = task.collate([task.dataset[i] for i in range(len(task.dataset))])
    task.model.eval()
    with torch.no_grad():
        logits = task.model(**inputs).logits.view(len(ids), -1)
    task.model.train()
    return float((logits.argmax(1) == 0).float().mean())


@pytest.fixture(scope="module")
def trained(tiny_bert, data, tmp_path_factory):
    out = tmp_path_factory.mktemp("reranker")
    trainer = _trainer(tiny_bert, data, out / "ckpt", epochs=10, lr=1e-2)  # a random tiny BERT needs a big step
    before = (trainer.evaluate(trainer.task.dataset), _positive_first(trainer))
    trainer.train(out / "model", out / "log.csv")
    after = (trainer.evaluate(trainer.task.dataset), _positive_first(trainer))
    return out, before, after


def test_training_lowers_the_listwise_loss_and_ranks_the_positive_first(trained):
    out, (loss0, top0), (loss1, top1) = trained
    assert loss0 > 1.0  # ~ln 4 for a fresh head over groups of 4
    assert loss1 < 0.5 * loss0
    # the positive ranks first more often than before training; how often depends on what the process ran before
    # this module (0.6875 on a pytest-xdist worker that had run other modules, >= 0.75 alone): no fixed figure
    assert top1 > top0 and top1 >= 0.5
    rows = list(csv.DictReader(open(out / "log.csv")))
    assert [int(r["step"]) for r in rows] == list(range(1, 41))  # 16 queries / 4 per step * 10 epochs
    assert json.loads((out / "model" / "dr_training.json").read_text())["train"]["group_size"] == 4
    card = (out / "model" / "README.md").read_text()
    assert "pipeline_tag: text-ranking" in card and f"`{TEMPLATE}`" in card and "cut to 64 tokens" in card


def test_crossencoder_loads_the_saved_reranker_and_gives_our_scores(trained, data):
    """'Same' means: CrossEncoder.predict returns the raw logit (the saved config sets an identity activation
    instead of the default sigmoid for one label) equal to ours within float tolerance, long passages
    included (we cut the passage only; CrossEncoder's 'longest_first' cuts it too while the query is the
    shorter part)."""
    out = trained[0] / "model"
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["BertForSequenceClassification"] and len(config["id2label"]) == 1
    assert config["sentence_transformers"] == {"activation_fn": IDENTITY}
    corpus = pd.read_parquet(data[0] / "corpus.parquet")
    long_text = " ".join(corpus["text"].head(8))  # far beyond max_len
    pairs = [("solar power", corpus["text"][0]), ("protein folding", long_text), ("cells", corpus["text"][3])]
    # One batch on both sides: the same padding, so the same sums; what is left is float32 rounding, a few ulps
    # of the logits' scale (atol alone, taken from one run, failed once at 1e-5 on shared cores).
    ours = cross_encoder_scores(str(out), pairs, batch_size=len(pairs), max_len=64)
    ce = CrossEncoder(str(out), device="cpu")
    scale = max(1.0, float(np.abs(ours).max()))
    np.testing.assert_allclose(ce.predict(pairs, batch_size=len(pairs)), ours, rtol=0, atol=1e-5 * scale)
    sigmoid = CrossEncoder(str(out), device="cpu", activation_fn=torch.nn.Sigmoid())
    np.testing.assert_allclose(sigmoid.predict(pairs, batch_size=len(pairs)), 1 / (1 + np.exp(-ours)), atol=1e-6)
    assert np.ptp(ours) > 1e-3  # the pairs' scores differ by 100x the tolerance: the equality is not trivial


class _Killed(Exception):
    pass


def test_interrupted_training_resumes_to_the_same_weights(tiny_bert, data, tmp_path):
    settings = dict(max_steps=12, checkpoint_every=4)
    _trainer(tiny_bert, data, tmp_path / "ck_a", **settings).train(tmp_path / "a", tmp_path / "a.csv")
    b = _trainer(tiny_bert, data, tmp_path / "ck_b", **settings)
    save = b.save_checkpoint

    def save_then_die():
        save()
        if b.step == 8:
            raise _Killed

    b.save_checkpoint = save_then_die
    with pytest.raises(_Killed):
        b.train(tmp_path / "b", tmp_path / "b.csv")
    assert not (tmp_path / "b").exists() and torch.load(tmp_path / "ck_b" / "state.pt", weights_only=False)["step"] == 8
    resumed = _trainer(tiny_bert, data, tmp_path / "ck_b", **settings)
    assert resumed.maybe_resume() and resumed.step == 8
    _trainer(tiny_bert, data, tmp_path / "ck_b", **settings).train(tmp_path / "b", tmp_path / "b.csv")
    a, b_ = (load_file(tmp_path / x / "model.safetensors") for x in "ab")
    for k in a:
        torch.testing.assert_close(a[k], b_[k], rtol=0, atol=0)
    rows_a, rows_b = (list(csv.DictReader(open(tmp_path / f"{x}.csv"))) for x in "ab")
    assert [r["loss"] for r in rows_a] == [r["loss"] for r in rows_b] and len(rows_a) == 12


def test_rerank_reorders_the_top_and_keeps_the_tail(trained, data):
    out = str(trained[0] / "model")
    run = pd.DataFrame(
        {"qid": ["q1"] * 5, "docid": ["1000", "1007", "1014", "1021", "1028"], "rank": [1, 2, 3, 4, 5]}
    ).assign(score=lambda df: 10.0 - df["rank"])
    corpus = pd.read_parquet(data[0] / "corpus.parquet").set_index("id")
    passages = {d: f"{corpus.loc[d, 'title']}. {corpus.loc[d, 'text']}" for d in run["docid"]}
    got = rerank(run, out, {"q1": "a query"}, passages, depth=3, batch_size=2, max_len=64)
    want = cross_encoder_scores(out, [("a query", passages[d]) for d in ["1000", "1007", "1014"]], 2, 64)
    assert got["docid"][:3].tolist() == [["1000", "1007", "1014"][i] for i in np.argsort(-want, kind="stable")]
    assert got["docid"][3:].tolist() == ["1021", "1028"] and got["rank"].tolist() == [1, 2, 3, 4, 5]
    assert got["score"].is_monotonic_decreasing


def _cli_args(d, model, out):
    return ["--model", str(model), "--queries", str(d / "queries.parquet"), "--corpus", str(d / "corpus.parquet"),
            "--out", str(out)]  # fmt: skip


def test_a_model_that_is_not_a_cross_encoder_is_refused_naming_the_key(tiny_bert, data, tmp_path, caplog):
    d = data[0]
    (tmp_path / "run.trec").write_text("q1 Q0 1000 1 3.0 bm25\n")
    (tmp_path / "negs.tsv").write_text("q1\t1007\n")
    caplog.set_level(logging.ERROR)
    rerank_args = ["rerank", *_cli_args(d, tiny_bert, tmp_path / "out.trec"), "--run", str(tmp_path / "run.trec")]
    assert cli.main([*rerank_args, "--tag", "x", "--depth", "5"]) == 1
    assert "config reranker.model" in caplog.text and "is not a cross-encoder" in caplog.text
    assert not (tmp_path / "out.trec").exists()
    caplog.clear()
    teacher_args = ["teacher-scores", *_cli_args(d, tiny_bert, tmp_path / "t.parquet"), "--kind", "cross"]
    qrels_args = ["--qrels", str(d / "qrels.parquet"), "--negatives", str(tmp_path / "negs.tsv")]
    assert cli.main([*teacher_args, *qrels_args]) == 1
    assert "config distill.teacher" in caplog.text and "is not a cross-encoder" in caplog.text
    assert not (tmp_path / "t.parquet").exists()
    caplog.clear()
    assert cli.main([*teacher_args[:2], str(tmp_path / "nowhere"), *teacher_args[3:], *qrels_args]) == 1
    assert "config distill.teacher: cannot read the model" in caplog.text


def _workflow_config(tmp_path, **reranker):
    config = yaml.safe_load((FIXTURES / "workflow_config.yaml").read_text())
    config["reranker"] = reranker
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def _snakemake(tmp_path, config, *targets, dry=False):
    args = ["--cores", "2", "--configfile", config, "--directory", str(tmp_path), *targets]
    proc = subprocess.run(snakemake_cmd(*(["-n"] if dry else []), *args), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_rerank_rule_on_the_fixture(fixture_run, tmp_path):
    settings = dict(systems=["bm25"], depth=10, max_len=64, epochs=1, batch_size=4, group_size=3)
    config = _workflow_config(tmp_path, **settings)
    work = copy_run(fixture_run, tmp_path / "run")  # the data and BM25's runs reused
    snakemake_in(work, "--cores", "2", "results/tiny/bm25+rerank/tiny/metrics.test.json", config=config)
    res = work / "results" / "tiny"
    assert json.loads((res / "bm25+rerank/tiny/metrics.test.json").read_text())["system"] == "bm25+rerank"
    bm25, reranked = read_trec(res / "bm25/tiny/run.test.trec"), read_trec(res / "bm25+rerank/tiny/run.test.trec")
    for qid, group in reranked.groupby("qid"):
        base = bm25[bm25["qid"] == qid]
        assert set(group["docid"][:10]) == set(base["docid"][:10])  # the top 10 re-ordered
        assert group["docid"][10:].tolist() == base["docid"][10:].tolist()  # the tail as it was
    assert CrossEncoder(str(res / "reranker/model"), device="cpu").predict([("a", "b")]).shape == (1,)


def test_reranked_systems_and_the_reranker_as_default_teacher_are_planned(tmp_path):
    config = yaml.safe_load((FIXTURES / "workflow_config.yaml").read_text())
    config.update(reranker={"systems": ["round2", "bm25+round2"]}, hybrid={"rounds": [2], "depth": 20})
    config["train"]["margin_mse_weight"] = 1.0
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    out = _snakemake(tmp_path, str(tmp_path / "c.yaml"), dry=True)
    assert "results/tiny/bm25+round2+rerank/tiny/metrics.test.json" in out
    assert "results/tiny/round2+rerank/tiny/run.test.trec" in out
    assert "teacher-scores --model results/tiny/reranker/model " in out and "--kind=cross" in out


def test_reranker_settings_defaults_are_the_schemas():
    """One home for each default: the schema's reranker training keys have RerankerSettings' defaults; the
    other keys are the workflow's own (rerank.smk does not pass them to training)."""
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    documented = {k: v["default"] for k, v in schema["properties"]["reranker"]["properties"].items()}
    fields = {f.name: f.default for f in dataclasses.fields(RerankerSettings)}
    assert {k: v for k, v in documented.items() if k in fields} == {k: fields[k] for k in documented.keys() & fields}
    assert documented.keys() - fields.keys() == {"systems", "model", "base", "train_round", "depth", "score_batch_size"}
