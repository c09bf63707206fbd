"""Provenance: what `python -m dr_core <step>` records beside its output (README: "records its arguments, seeds and
the library version beside it"): `<file>.meta.json` beside a file, `dr_meta.json` in a model folder (both written by
dr_core.atomic.write_provenance) and `dr_training.json` from the training loop. Real steps on tiny inputs in tmp_path.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pandas as pd
from conftest import prepare_tokenized, train_cli_args

import dr_core
from dr_core.cli import build_parser
from dr_core.fingerprint import step_fingerprint
from dr_core.model import BiEncoder, EncoderSpec, load_tokenizer
from dr_core.train import TrainSettings


def dr_core_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "dr_core", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def assert_provenance(record: dict, command: str, config: dict) -> None:
    """The record holds exactly the step's arguments, the installed dr_core's version and the fingerprint of the
    code the step runs (the one its workflow rule reruns on)."""
    assert set(record) == {"dr_core_version", "config", "code_fingerprint"}
    assert record["dr_core_version"] == dr_core.__version__
    assert record["config"] == config
    assert record["code_fingerprint"] == step_fingerprint(command)


def test_evaluate_and_mine_record_their_arguments_seed_version_and_code(tmp_path):
    """Two file outputs: each gets `<file>.meta.json` with every argument it was given (defaults included)."""
    (tmp_path / "run.trec").write_text(
        "q1 Q0 a 1 3.0 t\nq1 Q0 b 2 2.0 t\nq1 Q0 c 3 1.0 t\nq1 Q0 d 4 0.5 t\nq2 Q0 x 1 1.0 t\nq2 Q0 y 2 0.5 t\n"
    )
    pd.DataFrame({"qid": ["q1", "q2"], "docid": ["a", "y"], "rel": [1, 1]}).to_parquet(tmp_path / "qrels.parquet")

    metrics = ["ndcg@10", "map"]
    common = {"run": "run.trec", "qrels": "qrels.parquet", "threads": 0}
    evaluate = ["evaluate", "--run", "run.trec", "--qrels", "qrels.parquet", "--out", "m.json", "--system", "sys1"]
    dr_core_cli(*evaluate, "--dataset", "tiny", "--split", "test", "--metrics", *metrics, cwd=tmp_path)
    assert json.loads((tmp_path / "m.json").read_text())["system"] == "sys1"
    assert_provenance(
        json.loads((tmp_path / "m.json.meta.json").read_text()),
        "evaluate",
        {**common, "command": "evaluate", "out": "m.json", "system": "sys1", "dataset": "tiny", "split": "test",
         "metrics": metrics},
    )  # fmt: skip

    mine = ["mine", "--run", "run.trec", "--qrels", "qrels.parquet", "--out", "negs.tsv", "--rank-min", "1"]
    dr_core_cli(*mine, "--rank-max", "4", "--n", "2", "--seed", "11", cwd=tmp_path)
    assert (tmp_path / "negs.tsv").read_text().startswith("q1\t")
    record = json.loads((tmp_path / "negs.tsv.meta.json").read_text())
    assert record["config"]["seed"] == 11  # the seed that drew the negatives
    assert_provenance(
        record,
        "mine",
        {**common, "command": "mine", "out": "negs.tsv", "rank_min": 1, "rank_max": 4, "n": 2, "seed": 11,
         "bm25_fraction": 0.0, "bm25_run": None, "bm25_rank_min": 1, "bm25_rank_max": 100, "positive_scores": None,
         "filter_relative": None, "filter_margin": None},
    )  # fmt: skip
    assert step_fingerprint("mine") != step_fingerprint("evaluate")  # each record names its own step's code


def test_train_records_its_settings_in_dr_meta_and_dr_training(tiny_bert, tmp_path):
    """A 2-step `train`: the model folder holds dr_meta.json (the command line's arguments, the settings among them,
    version, code fingerprint) and dr_training.json (the settings, seed included, steps taken, world size)."""
    d = prepare_tokenized(tiny_bert, tmp_path)
    BiEncoder.from_base(str(tiny_bert), EncoderSpec(pooling="mean", q_max_len=16, p_max_len=48)).save(
        d / "init", load_tokenizer(tiny_bert)
    )
    (d / "negs.tsv").write_text("q1\t1007,1014\nq3\t1021\n")
    settings = {"max_steps": 2, "batch_size": 4, "group_size": 3, "lr": 1e-3, "seed": 7, "log_every": 1}
    argv = train_cli_args(d, "model", "ckpt", settings)
    dr_core_cli(*argv[1:], cwd=tmp_path)

    expected = {k: v for k, v in vars(build_parser().parse_args(argv[1:])).items() if k != "func"}
    assert expected["seed"] == 7 and expected["max_steps"] == 2 and expected["init"] == str(d / "init")
    assert_provenance(json.loads((d / "model" / "dr_meta.json").read_text()), "train", expected)

    training = json.loads((d / "model" / "dr_training.json").read_text())
    assert training == {
        "dr_core_version": dr_core.__version__,
        "train": asdict(TrainSettings(**settings)),
        "steps": 2,
        "world_size": 1,
    }
    assert training["train"]["seed"] == 7
    assert BiEncoder.load(d / "model").spec.pooling == "mean"  # the records sit beside a model that loads
