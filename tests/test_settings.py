"""One CLI convention: every setting is a flag made from its dataclass, `--help` shows it with its default, and
the workflow's rules pass a recipe's settings as those flags."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import re
import shlex
import subprocess
import sys

import pytest
import yaml
from conftest import REPO, snakemake_cmd

from dr_core.cli import build_parser, main
from dr_core.dro import DroSettings
from dr_core.evaluate import DEFAULT_BASELINES, DEFAULT_METRICS
from dr_core.model import EncoderSpec
from dr_core.reranker import RerankerSettings
from dr_core.settings import settings_argv, settings_from_args
from dr_core.templates import PASSAGE_TEMPLATE
from dr_core.train import TrainSettings

TRAIN_PATHS = [x for name in ("init", "queries", "corpus", "qrels", "negatives", "out", "log", "checkpoint-dir")
               for x in (f"--{name}", f"/nowhere/{name}")]  # fmt: skip
RERANKER_PATHS = ["--base", "/nowhere/base", *TRAIN_PATHS[2:]]
LOOP = {
    "epochs": 2.5, "max_steps": 7, "batch_size": 5, "grad_accum": 2, "lr": 3.0e-4, "weight_decay": 0.02,
    "warmup_ratio": 0.2, "warmup_steps": 3, "schedule": "constant", "optimizer": "lamb", "max_grad_norm": 0.5,
    "val_fraction": 0.25, "val_queries": 4, "eval_every": 5, "seed": 7, "precision": "fp32",
    "gradient_checkpointing": True, "compile": True, "num_workers": 1, "checkpoint_every": 9, "log_every": 3,
    "tensorboard": True,
}  # fmt: skip
# Every field of each settings class away from its default (checked below), with the command that takes it.
NON_DEFAULT = {
    "train": TrainSettings(
        **LOOP, group_size=3, temperature=0.05, cross_device=False, mask_false_negatives=False,
        contrastive_weight=0.5, margin_mse_weight=1.5, kl_weight=0.25, kl_temperature=2.0, teacher_temperature=0.1,
        sample_neg_from_topk=10, neg_skip_top=2, lora={"r": 4, "target_modules": ["query", "value"]},
        grad_cache_chunk=2, attention_dropout=0.0,
    ),
    "dro": DroSettings(type="idro", num_clusters=3, alpha=0.5, ema=0.3, rho=0.1, eps=0.02, grad_layers=1),
    "train-reranker": RerankerSettings(**{**LOOP, "batch_size": 3}, group_size=4, max_len=128),
    "init-model": EncoderSpec(
        pooling="mean", similarity="cosine", q_max_len=24, p_max_len=96, untied=True, projection_dim=64,
        query_template="query: {text}", passage_template="passage: {title} {text}",
        passage_template_untitled="passage: {text}",
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", NON_DEFAULT)
def test_settings_round_trip_through_their_command(name):
    """dataclass -> flags -> the command's parsed arguments -> dataclass gives it back, every field changed."""
    settings = NON_DEFAULT[name]
    defaults = type(settings)()
    assert all(getattr(settings, f.name) != getattr(defaults, f.name) for f in dataclasses.fields(settings))
    prefix = "dro" if name == "dro" else ""
    command = {"dro": ["train", *TRAIN_PATHS], "train": ["train", *TRAIN_PATHS],
               "train-reranker": ["train-reranker", *RERANKER_PATHS],
               "init-model": ["init-model", "--base", "b", "--out", "o"]}[name]  # fmt: skip
    args = build_parser().parse_args([*command, *settings_argv(settings, prefix)])
    assert settings_from_args(type(settings), args, prefix) == settings
    # and the flags left out are the dataclass's defaults
    assert settings_from_args(type(settings), build_parser().parse_args(command), prefix) == defaults


def help_entries(text: str, flags: list[str]) -> dict[str, str]:
    """Each flag's entry in a --help text's option lists (not its usage line): from the flag to the next one."""
    body = " ".join(text.split("options:", 1)[1].split())
    starts = [re.search(rf"(?<=\s){re.escape(flag)}[\s,]", body).start() for flag in flags]
    assert starts == sorted(starts), "the flags are listed in field order"
    return {flag: body[a:b] for flag, a, b in zip(flags, starts, starts[1:] + [len(body)])}


def shown(value) -> str:
    """A default as --help shows it: a string quoted, None and bools as JSON."""
    if isinstance(value, str):
        return repr(value)
    return json.dumps(value) if value is None or isinstance(value, bool) else str(value)


def test_train_help_lists_every_setting_with_its_default(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for cls, prefix in ((TrainSettings, ""), (DroSettings, "dro")):
        names = [f.name for f in dataclasses.fields(cls)]
        flags = ["--" + (f"{prefix}_{n}" if prefix else n).replace("_", "-") for n in names]
        entries = help_entries(text, flags)
        for name, flag in zip(names, flags):
            default = re.search(r"\(default: ([^)]*)\)", entries[flag])
            assert default and default.group(1) == shown(getattr(cls(), name)), entries[flag]
            assert len(entries[flag].split(")")[0]) > len(flag) + 20, f"{flag} has a help text"
    assert "(default: 2e-05)" in " ".join(text.split()) and "--no-cross-device" in text


@pytest.mark.parametrize(
    "flag_value, message",
    [
        ("--lr=fast", "argument --lr: invalid float value: 'fast'"),
        ("--grad-cache-chunk=two", "argument --grad-cache-chunk: invalid int or null value: 'two'"),
        ("--lora={r: 4}", "argument --lora: invalid JSON object or null value: '{r: 4}'"),
        ("--lora=[4]", "argument --lora: invalid JSON object or null value: '[4]'"),
        ("--schedule=cosine", "argument --schedule: invalid choice: 'cosine'"),
        ("--dro-type=cvar", "argument --dro-type: invalid choice: 'cvar'"),
        ("--cross-device=yes", "argument --cross-device/--no-cross-device: ignored explicit argument 'yes'"),
        ("--learning-rate=0.1", "unrecognized arguments: --learning-rate=0.1"),
    ],
)
def test_a_bad_value_is_argparses_error_naming_the_flag(capsys, flag_value, message):
    with pytest.raises(SystemExit) as exit_:
        main(["train", *TRAIN_PATHS, flag_value])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: dr_core") and message in err, err


def test_a_value_the_settings_refuse_fails_naming_the_key(caplog):
    """Parsed but refused by TrainSettings: the step fails (1) before reading any input."""
    assert main(["train", *TRAIN_PATHS, "--batch-size=0"]) == 1
    assert "train.batch_size and train.grad_accum must be at least 1" in caplog.text


def test_commands_without_settings_import_no_torch():
    """The settings' modules import torch: only a command with settings imports them, when it parses."""
    code = (
        "import sys\nfrom dr_core.cli import build_parser\np = build_parser()\np.format_help()\n"
        "p.parse_args(['bm25', '--corpus', 'c', '--queries', 'q', '--qrels', 'r', '--out', 'o'])\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "p.parse_args(['init-model', '--base', 'b', '--out', 'o'])\nassert 'torch' in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr


def test_msmarco_steps_take_named_inputs(tmp_path, caplog):
    run = tmp_path / "run.trec"
    run.write_text("q1 Q0 d2 1 0.9 x\nq1 Q0 d1 2 0.5 x\n")
    assert main(["msmarco", "run", "--run", str(run), "--out", str(tmp_path / "run.tsv")]) == 0
    assert (tmp_path / "run.tsv").read_text() == "q1\td2\t1\nq1\td1\t2\n"
    assert main(["msmarco", "qrels", "--qrels", str(run), "--out", str(tmp_path / "qrels.parquet")]) == 1
    assert "msmarco qrels needs --corpus and --queries" in caplog.text
    assert not (tmp_path / "qrels.parquet").exists()


def test_the_rules_pass_a_recipes_settings_as_flags(tmp_path):
    """The commands a dry run prints parse with the CLI into the recipe's settings (JSON only for train.lora)."""
    config = yaml.safe_load((REPO / "tests" / "fixtures" / "workflow_config.yaml").read_text())
    config["train"].update(lora={"r": 4}, cross_device=False)
    config["model"].update(query_template="query: {text}", pooling="mean")
    config.update(dro={"type": "greedy", "num_clusters": 2}, reranker={"systems": ["round1"], "max_len": 64})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    cmd = snakemake_cmd("-n", "-p", "--configfile", str(tmp_path / "c.yaml"), "--directory", str(tmp_path))
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:]
    parsed = {}
    for line in proc.stdout.splitlines():
        words = shlex.split(line.split(" > ")[0]) if " dr_core " in line else []
        if {"train", "init-model", "train-reranker"} & set(words):
            args = build_parser().parse_args(words[words.index("dr_core") + 1 :])
            parsed.setdefault(args.command, []).append(args)
    assert [len(parsed[c]) for c in ("train", "init-model", "train-reranker")] == [2, 1, 1]
    assert all(settings_from_args(TrainSettings, a) == TrainSettings(**config["train"]) for a in parsed["train"])
    assert settings_from_args(DroSettings, parsed["train"][0], "dro") == DroSettings(type="greedy", num_clusters=2)
    spec = settings_from_args(EncoderSpec, parsed["init-model"][0])
    assert spec == EncoderSpec(pooling="mean", q_max_len=16, p_max_len=48, query_template="query: {text}")
    assert settings_from_args(RerankerSettings, parsed["train-reranker"][0]) == RerankerSettings(max_len=64)
    assert "'--lora={\"r\": 4}'" in proc.stdout


def schema_default(path: str):
    """The default the config schema gives key `path` (`negatives.mine.filter.relative`); KeyError when the
    recipe has no such key."""
    node = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    for key in path.split("."):
        node = node["properties"][key]
    return node["default"]


# Each settings class's recipe keys: the section its fields are named after, and the fields named otherwise (None:
# no recipe key, the workflow runs the default). The reranker's loop settings are not recipe keys (it trains with
# their defaults) except those the schema lists.
RECIPE_KEYS = {
    "dr_core.train:TrainSettings": ("train", {}),
    "dr_core.dro:DroSettings": ("dro", {}),
    "dr_core.model:EncoderSpec": ("model", {}),
    "dr_core.reranker:RerankerSettings": ("reranker", {}),
    "dr_core.bm25:Bm25Settings": ("bm25", {}),
    "dr_core.encode:EncodeSettings": ("encode", {"max_len": "encode.p_max_len"}),
    "dr_core.index:IndexSettings": ("index", {}),
    "dr_core.tokenization:TokenizeSettings": (
        "model",
        {"template": None, "untitled_template": "model.passage_template_untitled", "batch_size": None},
    ),
    "dr_core.search:SearchSettings": ("index", {"k": "eval.depth", "batch_size": None, "max_len": "encode.q_max_len"}),
    "dr_core.commands.evaluation:FuseSettings": ("hybrid", {}),
    "dr_core.clustering:ClusterSettings": ("dro", {"seed": "train.seed", "batch_size": None}),
    "dr_core.denoise:DenoiseSettings": ("negatives.denoise", {}),
    "dr_core.significance:SignificanceSettings": ("eval", {}),
    "dr_core.teacher:TeacherSettings": ("distill", {"template": "model.passage_template"}),
    "dr_core.reranker:RerankSettings": (
        "reranker",
        {"template": "model.passage_template", "batch_size": "reranker.score_batch_size"},
    ),
    "dr_core.negatives:MineSettings": (
        "negatives.mine",
        {
            "seed": "negatives.seed",
            "bm25_rank_min": "negatives.first_stage.rank_min",
            "bm25_rank_max": "negatives.first_stage.rank_max",
            "filter_relative": "negatives.mine.filter.relative",
            "filter_margin": "negatives.mine.filter.margin",
        },
    ),
}


RERANKER_KEYS = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())["properties"][
    "reranker"
]["properties"]


def test_every_settings_default_is_the_config_schemas():
    """A default is written once, in its dataclass: the schema's default of each recipe key a command's settings
    field comes from is the same value (a field without a default, such as the mine windows, has the schema's
    defaults only), for every command that has settings."""
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    used = {target for parser in sub.choices.values() for target in parser._pending.values()}
    assert used == set(RECIPE_KEYS), "every command's settings class has its recipe keys here"
    for target, (section, renamed) in RECIPE_KEYS.items():
        module, _, name = target.partition(":")
        cls = getattr(importlib.import_module(module), name)
        for f in dataclasses.fields(cls):
            key = renamed.get(f.name, f"{section}.{f.name}")
            if (
                key is None
                or f.default is dataclasses.MISSING
                or (name == "RerankerSettings" and f.name not in RERANKER_KEYS)
            ):
                continue
            assert schema_default(key) == f.default, f"{key}: schema {schema_default(key)!r}, {name} {f.default!r}"
    assert schema_default("model.passage_template") == PASSAGE_TEMPLATE
    # summarize's and compare's list defaults (nargs flags, not settings fields)
    assert schema_default("eval.baselines") == DEFAULT_BASELINES
    assert schema_default("eval.metrics") == DEFAULT_METRICS
