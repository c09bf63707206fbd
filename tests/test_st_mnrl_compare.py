"""benchmarks/st_mnrl_compare.py: on the same groups, our Trainer (CLI) and sentence-transformers' MNRL
(old_fit) compute the same loss at every step when dropout is off: same data, loss, optimizer and schedule."""

import csv
import json
import subprocess
import sys

import pandas as pd
import pytest
import sentence_transformers  # noqa: F401  (required, not optional: missing, these tests fail)
from conftest import REPO, prepare_tokenized, train_cli_args

from dr_core.data.formats import write_negatives
from dr_core.model import BiEncoder, EncoderSpec, load_tokenizer
from dr_core.templates import format_passages
from dr_core.tokenization import TokenStore

sys.path.insert(0, str(REPO / "benchmarks"))
import st_mnrl_compare as cmp  # noqa: E402

TEMPLATE = "Title: {title} Text: {text}"


@pytest.fixture()
def inputs(tiny_bert, tmp_path):
    """The tiny collection tokenized (queries 16, passages 48), negatives for some queries, and an initial
    model without dropout (so that both sides' losses are deterministic)."""
    d = prepare_tokenized(tiny_bert, tmp_path, TEMPLATE)
    spec = EncoderSpec(pooling="mean", similarity="cosine", q_max_len=16, p_max_len=48)
    BiEncoder.from_base(str(tiny_bert), spec).save(d / "init", load_tokenizer(tiny_bert))
    config = json.loads((d / "init" / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (d / "init" / "config.json").write_text(json.dumps(config))
    write_negatives({"q1": ["1007", "1014", "1003"], "q3": ["1021", "1002"], "q5": ["1009"]}, d / "negs.tsv")
    return d


def _texts(d, batches):
    corpus, queries = pd.read_parquet(d / "corpus.parquet"), pd.read_parquet(d / "queries.parquet")
    passages = dict(zip(corpus["id"], format_passages(corpus["title"], corpus["text"], TEMPLATE)))
    return cmp.st_texts(batches, dict(zip(queries["qid"], queries["text"])), passages)


def test_same_groups_give_the_same_loss_at_every_step(inputs, tmp_path):
    d = inputs
    s = {"epochs": 2.0, "batch_size": 5, "group_size": 3, "lr": 5e-4, "temperature": 0.1, "seed": 7,
         "weight_decay": 0.01, "max_grad_norm": 1.0, "q_max_len": 16, "p_max_len": 48, "warmup_steps": 2}  # fmt: skip
    qrels = pd.read_parquet(d / "qrels.parquet")
    queries, corpus = TokenStore(d / "tq.parquet"), TokenStore(d / "tc.parquet")
    batches = cmp.training_batches(qrels, {"q1": ["1007", "1014", "1003"], "q3": ["1021", "1002"], "q5": ["1009"]},
                                   queries, corpus, s)  # fmt: skip
    assert [len(b) for b in batches] == [5, 5, 5, 1] * 2  # 16 train queries per epoch, the last batch short
    assert batches[0] != batches[4]  # each epoch draws its own order
    texts = _texts(d, batches)

    ours_first, st_first = cmp.first_step_losses(d / "init", batches[0], texts[0], queries, corpus, s)
    assert ours_first == pytest.approx(st_first, rel=1e-5)

    args = train_cli_args(d, "ours", "ckpt", cmp.our_settings(s))
    subprocess.run([sys.executable, "-m", *args], check=True, cwd=REPO)
    with open(d / "ours.csv") as f:
        ours = [float(r["loss"]) for r in csv.DictReader(f)]
    st = cmp.train_st(d / "init", texts, s, tmp_path / "st_model")
    assert len(ours) == len(st) == 8
    assert ours[0] == pytest.approx(ours_first, rel=1e-5)
    assert ours == pytest.approx(st, rel=1e-4)  # later steps agree only if optimizer and lr schedule do
    assert ours[-1] < 0.9 * ours[0]  # and the model did train


def test_a_different_schedule_would_show():
    """The test above can tell schedules apart: transformers' warmup starts at lr 0, ours at lr / warmup."""
    assert [cmp.schedule(s, 2, 8) for s in range(4)] == [0.5, 1.0, 1.0, 5 / 6]
