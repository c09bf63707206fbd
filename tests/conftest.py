"""Shared fixtures: the tiny BEIR collection, a tiny random BERT with a tokenizer trained on the fly."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
TINY_BEIR = FIXTURES / "beir" / "tiny"
SHARED_DATA = REPO.parent / "shared" / "data"


NO_SLURM_PATH = "DR_TEST_NO_SLURM_PATH"  # the environment variable naming the stand-in `scontrol`'s folder


@pytest.fixture(scope="session", autouse=True)
def no_slurm_controller_wait(tmp_path_factory) -> Iterator[None]:
    """A `scontrol` that fails at once, first on PATH for the whole session. Where SLURM's client is installed
    (CI installs it for tests/test_slurm.py), Snakemake's SLURM plugin runs `scontrol show config` while being
    imported, and with no controller up that waits 10 s on every `snakemake` call (docs/cluster.md): 10.4 s
    against 1.3 s for a dry run here. tests/test_slurm.py takes it off PATH while its cluster runs."""
    stub = tmp_path_factory.mktemp("no_slurm")
    (stub / "scontrol").write_text("#!/bin/sh\necho 'no SLURM controller in these tests' >&2\nexit 1\n")
    (stub / "scontrol").chmod(0o755)
    old = os.environ["PATH"]
    os.environ["PATH"], os.environ[NO_SLURM_PATH] = f"{stub}{os.pathsep}{old}", str(stub)
    yield
    os.environ["PATH"] = old
    del os.environ[NO_SLURM_PATH]


def snakemake_cmd(*args: str) -> list[str]:
    """`python -m snakemake` on the repository's Snakefile with `args`."""
    return [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), *args]


def train_cli_args(d: Path, out: str, ckpt: str, settings: dict) -> list[str]:
    """Arguments of the `train` step after `python -m` (or `torchrun ... -m --`) on the prepared fixture in `d`,
    `settings` (TrainSettings keys) as their flags."""
    from dr_core.settings import settings_argv

    paths = {
        "--init": d / "init", "--queries": d / "tq.parquet", "--corpus": d / "tc.parquet",
        "--qrels": d / "qrels.parquet", "--negatives": d / "negs.tsv", "--out": d / out,
        "--log": d / f"{out}.csv", "--checkpoint-dir": d / ckpt,
    }  # fmt: skip
    flags = [x for flag, path in paths.items() for x in (flag, str(path))]
    return ["dr_core", "--threads", "1", "train", *flags, *settings_argv(settings)]


def rerank_groups(d: Path, n_negatives: int) -> tuple[Path, pd.DataFrame, dict[str, list[str]]]:
    """The tiny collection's train split prepared in `d`, its qrels, and `n_negatives` negatives per query (the
    corpus from a per-query offset, positives left out): the reranker tests' groups."""
    from dr_core.data.beir import prepare_collection, prepare_qrels

    prepare_collection(TINY_BEIR, d)
    prepare_qrels(TINY_BEIR, "train", d / "corpus.parquet", d / "queries.parquet", d / "qrels.parquet")
    qrels = pd.read_parquet(d / "qrels.parquet")
    docs = pd.read_parquet(d / "corpus.parquet")["id"].tolist()
    positives = qrels[qrels["rel"] > 0].groupby("qid")["docid"].agg(set).to_dict()
    negatives = {
        q: [x for x in docs[i % 5 :] if x not in pos][:n_negatives] for i, (q, pos) in enumerate(positives.items())
    }
    return d, qrels, negatives


def assert_same_training(a: dict, b: dict, init: dict, lr: float, steps: int) -> None:
    """Two AdamW runs that should take the same steps (world 1 and world 2, cached and uncached) end with the same
    weights, within what float32 summation order alone can change. A gradient element near zero may change sign
    with the order of a sum, and Adam then moves it the other way by up to lr (1 - b1) / sqrt(1 - b2) = 3.16 lr
    a step (Kingma & Ba, 2.1; weight decay adds lr * 0.01 * |w|): so each element is within 2 * 3.2 * lr * steps.
    Such elements are those whose gradient is at rounding level, a vanishing share, so each tensor's update agrees
    as a whole: the difference's norm is under 1% of the update's. A run that took other steps (other data, other
    groups, a missing gradient) moves every element differently and fails both."""
    bound = 2 * 3.2 * lr * steps
    for k, w in a.items():
        diff = (w - b[k]).abs()
        assert diff.max().item() <= bound, f"{k}: an element differs by {diff.max().item():.3g} > {bound:.3g}"
        update = (w - init[k]).norm().item()
        assert diff.norm().item() <= 0.01 * update + 1e-6, f"{k}: |a - b| {diff.norm().item():.3g}, update {update:.3g}"


def _texts() -> list[str]:
    out = []
    for line in (TINY_BEIR / "corpus.jsonl").read_text().splitlines():
        rec = json.loads(line)
        out.append(f"{rec['title']} {rec['text']}")
    out += [json.loads(line)["text"] for line in (TINY_BEIR / "queries.jsonl").read_text().splitlines()]
    return out


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """A 2-layer, 32-hidden BERT (random init, seeded) with a WordPiece tokenizer trained on the fixture text."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    path = tmp_path_factory.mktemp("tiny_bert")
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(_texts(), trainers.WordPieceTrainer(vocab_size=400, special_tokens=special))
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    fast.save_pretrained(path)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(path)
    return path


def prepare_tokenized(model_dir: Path, dest: Path, template: str = "Title: {title} Text: {text}") -> Path:
    """The tiny collection prepared in `dest` (corpus, queries, train qrels) and tokenized with `model_dir`'s
    tokenizer: tc.parquet (passages, 48 tokens) and tq.parquet (queries, 16 tokens)."""
    from dr_core.data.beir import prepare_collection, prepare_qrels
    from dr_core.model import load_tokenizer
    from dr_core.tokenization import TokenizeSettings, tokenize_table

    prepare_collection(TINY_BEIR, dest)
    prepare_qrels(TINY_BEIR, "train", dest / "corpus.parquet", dest / "queries.parquet", dest / "qrels.parquet")
    tok = load_tokenizer(model_dir)
    tokenize_table(dest / "corpus.parquet", dest / "tc.parquet", tok, "id", TokenizeSettings(48, template))
    tokenize_table(dest / "queries.parquet", dest / "tq.parquet", tok, "qid", TokenizeSettings(16))
    return dest


@pytest.fixture()
def tiny_beir() -> Path:
    return TINY_BEIR


def shared_or_skip(name: str) -> Path:
    path = SHARED_DATA / name
    if not (path / "corpus.jsonl").exists():
        pytest.skip(f"{path} is absent")
    return path


FIXTURE_RECIPE = "tests/fixtures/workflow_config.yaml"  # the fixture recipe, relative to a repository copy
FIXTURE_CONFIG = REPO / FIXTURE_RECIPE


def write_config(tmp_path: Path, **changes) -> Path:
    """The fixture recipe with `changes` (dotted key -> value) applied, written to tmp_path/config.yaml."""
    config = yaml.safe_load(FIXTURE_CONFIG.read_text())
    for dotted, value in changes.items():
        node = config
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


REPO_PARTS = ("workflow", "config", "profiles", "envs", "tests/fixtures", "dr_core")


def snakemake_in_cmd(repo: Path, *args: str, config: str | Path = FIXTURE_RECIPE) -> list[str]:
    """The command line of `snakemake_in`, to be run with cwd=repo and env=in_copy(repo)."""
    return [sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile"), *args, "--configfile", str(config)]


def in_copy(repo: Path) -> dict[str, str]:
    """The environment whose `python -m dr_core` is the copy's dr_core."""
    return {**os.environ, "PYTHONPATH": str(repo)}


def snakemake_in(repo: Path, *args: str, config: str | Path = FIXTURE_RECIPE, check: bool = True):
    """Snakemake in a copy of the repository: its Snakefile, its folder as the workdir, its dr_core (PYTHONPATH)."""
    cmd = snakemake_in_cmd(repo, *args, config=config)
    proc = subprocess.run(cmd, cwd=repo, env=in_copy(repo), capture_output=True, text=True, timeout=1200)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def copy_run(repo: Path, dest: Path) -> Path:
    """`cp -a` of a repository copy (modification times kept, so Snakemake sees its results as done) into `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-a", str(repo), str(dest)], check=True)
    return dest / repo.name


@pytest.fixture(scope="session")
def fixture_run(tmp_path_factory, worker_id) -> Path:
    """A copy of the repository (workflow, recipes, fixtures, dr_core) where the whole fixture recipe (2 rounds) has
    run once, its results inside the copy and the fixture data given by a path relative to it. Built once per
    test run: under pytest-xdist the first worker to ask builds it in the run's common temporary folder while the
    others wait on a lock, then all read it. The slow tests read it, dry-run against it, or start from a
    `copy_run` of it."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    shared = base if worker_id == "master" else base.parent  # xdist: gw0, gw1 ... share their parent
    repo, done = shared / "fixture_run" / "repo", shared / "fixture_run.done"
    with FileLock(shared / "fixture_run.lock"):
        if not done.exists():
            shutil.rmtree(repo.parent, ignore_errors=True)
            for name in REPO_PARTS:
                shutil.copytree(REPO / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
            shutil.copy2(REPO / "Snakefile", repo / "Snakefile")
            snakemake_in(repo, "--cores", "2")
            done.touch()
    return repo
