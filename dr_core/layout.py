"""The results tree of one recipe (`results/<name>/`): the path of every file the workflow writes, relative to
that run folder, in one place. The workflow's rules and the library (tryout, the CLI) name a path one way.

Called with values, a function gives one file (`qrels("scifact", "train")` is `data/scifact/qrels.train.parquet`);
called without them, the Snakemake pattern its rules write (`qrels()` is `data/{dataset}/qrels.{split}.parquet`,
the wildcards in braces). A system's folder is its name: `bm25`, `round<r>`, `selected`, `wise-<ranker>`,
`bm25+<ranker>`, `<system>+rerank`; the reranker's is `reranker`."""

from __future__ import annotations

import re

DATA_DIR = "data"
EMB_DIR = "emb"  # a dense model's corpus embedding shards of a dataset: <dense>/<dataset>/emb/shard<s>.npy
INDEX_FILE = "index.faiss"
INDEX_META = "index.json"
MODEL_DIR = "model"
CORPUS_FILE = "corpus.parquet"
FUSION_FILE = "fusion.json"


# Data tables of a dataset (prepare, qrels, tokenize; MS MARCO and Tevatron intermediates).
def data_dir(dataset: str = "{dataset}") -> str:
    return f"{DATA_DIR}/{dataset}"


def table(dataset: str = "{dataset}", name: str = "{table}") -> str:
    """A Parquet table of a dataset: corpus or queries."""
    return f"{data_dir(dataset)}/{name}.parquet"


def corpus(dataset: str = "{dataset}") -> str:
    return f"{data_dir(dataset)}/{CORPUS_FILE}"


def queries(dataset: str = "{dataset}") -> str:
    return table(dataset, "queries")


def qrels(dataset: str = "{dataset}", split: str = "{split}") -> str:
    return f"{data_dir(dataset)}/qrels.{split}.parquet"


def tokens(dataset: str = "{dataset}", name: str = "{table}") -> str:
    """The tokenized corpus or queries of a dataset."""
    return f"{data_dir(dataset)}/tokens.{name}.parquet"


def corpus_tsv(dataset: str = "{dataset}") -> str:
    """MS MARCO's passages joined with their titles."""
    return f"{data_dir(dataset)}/corpus.tsv"


def triples_negatives(dataset: str = "{dataset}") -> str:
    """Negatives from MS MARCO's training triples."""
    return f"{data_dir(dataset)}/triples.negatives.tsv"


def tevatron_queries(dataset: str = "{dataset}", split: str = "{split}") -> str:
    return f"{data_dir(dataset)}/tevatron.queries.{split}.parquet"


def tevatron_negatives(dataset: str = "{dataset}", split: str = "{split}") -> str:
    return f"{data_dir(dataset)}/tevatron.negatives.{split}.tsv"


# Rounds: round 0 is the base model, round r >= 1 is trained on its negatives.
def round_name(round_: int | str = "{round}") -> str:
    """The system (and folder) name of ANCE round `round_`."""
    return f"round{round_}"


def round_of(name: str) -> int | None:
    """The round number of a system name `round<r>`, else None."""
    match = re.fullmatch(r"round(\d+)", name)
    return int(match.group(1)) if match else None


def model(system: str = "{dense}") -> str:
    """A model folder (save_pretrained): a round's, a merged model's (wise-*) or the reranker's."""
    return f"{system}/{MODEL_DIR}"


def round_model(round_: int | str = "{round}") -> str:
    return model(round_name(round_))


def round_file(name: str, round_: int | str = "{round}") -> str:
    """A file of round `round_`'s folder."""
    return f"{round_name(round_)}/{name}"


def train_negatives(round_: int | str = "{round}", denoised: bool = False) -> str:
    return round_file("train_negatives.denoised.tsv" if denoised else "train_negatives.tsv", round_)


def positive_scores(round_: int | str = "{round}") -> str:
    return round_file("positive_scores.tsv", round_)


def teacher_scores(round_: int | str = "{round}") -> str:
    return round_file("teacher_scores.parquet", round_)


def query_clusters(round_: int | str = "{round}") -> str:
    return round_file("query_clusters.tsv", round_)


def train_log(system: str = "round{round}") -> str:
    """A trained model's training log: a round's or the reranker's."""
    return f"{system}/train_log.csv"


def checkpoints(system: str = "round{round}") -> str:
    return f"{system}/checkpoints"


def model_card(round_: int | str = "{round}") -> str:
    return round_file("model_card.md", round_)


def hub_push(round_: int | str = "{round}") -> str:
    return round_file("hub_push.json", round_)


def scaled_t5() -> str:
    """The base T5 with its weights scaled (model.scale_t5_weights), round 0's base."""
    return "base_model/t5_scaled"


# A dense model's corpus embeddings and index of a dataset, and any system's runs and metrics.
def dataset_dir(system: str = "{system}", dataset: str = "{dataset}") -> str:
    """A system's folder of one dataset: its runs and metrics; a dense model's embeddings and index too."""
    return f"{system}/{dataset}"


def emb_dir(dense: str = "{dense}", dataset: str = "{dataset}") -> str:
    return f"{dataset_dir(dense, dataset)}/{EMB_DIR}"


def emb_shard(dense: str = "{dense}", dataset: str = "{dataset}", shard: int | str = "{shard}") -> str:
    """One shard's embeddings (`.npy`); its doc ids are `emb_ids`."""
    return f"{emb_dir(dense, dataset)}/shard{shard}.npy"


def emb_ids(dense: str = "{dense}", dataset: str = "{dataset}", shard: int | str = "{shard}") -> str:
    return f"{emb_dir(dense, dataset)}/shard{shard}.ids.txt"


def index(dense: str = "{dense}", dataset: str = "{dataset}") -> str:
    return f"{dataset_dir(dense, dataset)}/{INDEX_FILE}"


def index_meta(dense: str = "{dense}", dataset: str = "{dataset}") -> str:
    return f"{dataset_dir(dense, dataset)}/{INDEX_META}"


def run(system: str = "{system}", dataset: str = "{dataset}", split: str = "{split}") -> str:
    """A TREC run file."""
    return f"{dataset_dir(system, dataset)}/run.{split}.trec"


def msmarco_run(system: str = "{system}", dataset: str = "{dataset}", split: str = "{split}") -> str:
    """A run in MS MARCO's format."""
    return f"{dataset_dir(system, dataset)}/run.{split}.msmarco.tsv"


def metrics(system: str = "{system}", dataset: str = "{dataset}", split: str = "{split}") -> str:
    return f"{dataset_dir(system, dataset)}/metrics.{split}.json"


def fusion_weight(ranker: str = "{ranker}") -> str:
    """The tuned dense weight of the hybrid `bm25+<ranker>`."""
    return f"bm25+{ranker}/{FUSION_FILE}"


# Dev choices, tables, report, logs and benchmarks.
def decision(round_: int | str = "{round}") -> str:
    """Whether to train the round after `round_` (ance.rounds' stopping rule)."""
    return f"rounds/decision{round_}.json"


def choice() -> str:
    """The round selected on dev."""
    return "selected/choice.json"


def summary() -> str:
    return "summary.tsv"


def summary_beir() -> str:
    return "summary.beir.tsv"


def sweep_table() -> str:
    """A sweep's comparison of its variants (their `selected` rounds); each variant's own files are under
    `variants/<variant>/` where they differ from the base recipe's (dr_core.sweep)."""
    return "sweep.tsv"


def report(name: str) -> str:
    """A figure or table of `snakemake --report`."""
    return f"report/{name}"


def log(*parts: str) -> str:
    """A job's log: `log("bm25", "scifact.test")` is `logs/bm25/scifact.test.log`."""
    return f"logs/{'/'.join(parts)}.log"


def benchmark(*parts: str) -> str:
    """A job's benchmark table: `benchmark("train", "round1")` is `benchmarks/train/round1.tsv`."""
    return f"benchmarks/{'/'.join(parts)}.tsv"
