# Datasets: their kinds' wildcard patterns, where each dataset's source files are (outside results/), the dev
# split carved from the train split, and the checks that every dataset used is defined.
import os

from dr_core.data.msmarco.files import RAW_FILES


def names_pattern(kind):
    """A regex matching exactly the configured datasets of one kind (beir or msmarco)."""
    names = [re.escape(n) for n, d in config["datasets"].items() if d["kind"] == kind]
    return "|".join(names) or "(?!)"


BEIR_DATASETS = names_pattern("beir")
# Raw MS MARCO files the rules read, and which qrels file backs each split.
MSMARCO_RAW_FILES = list(RAW_FILES)
MSMARCO_QRELS = {"train": "qrels.train.tsv", "dev": "qrels.dev.small.tsv"}
MSMARCO_DATASETS = names_pattern("msmarco")
LOTTE_DATASETS = names_pattern("lotte")
TEVATRON_DATASETS = names_pattern("tevatron")
# The kinds the recipe defines a dataset of: the Snakefile includes a kind's rules only for these.
KINDS = {d["kind"] for d in config["datasets"].values()}


wildcard_constraints:
    vdir=r"(variants/[^/]+/)?",
    dataset=r"[A-Za-z0-9_-]+",
    split=r"[A-Za-z0-9_-]+",
    round=r"\d+",
    shard=r"\d+",
    dense=r"round\d+|wise-(round\d+|selected)",
    ranker=r"round\d+|selected|wise-(round\d+|selected)",
    system=r"(bm25|(bm25\+)?(round\d+|selected|wise-(round\d+|selected)))(\+rerank)?",


def repo_path(path):
    """Input paths in config are relative to the repository (the Snakefile's folder), not the workdir. One in
    or beside the workdir (at most one `..`) enters jobs relative to it, so a copy or move of the repository
    with its results keeps its inputs (Snakemake reruns a job whose set of input paths changed); others stay
    absolute, as do paths given absolute."""
    if os.path.isabs(path):
        return path
    relative = os.path.relpath(os.path.join(workflow.basedir, path))
    if Path(relative).parts.count("..") <= 1:
        return relative
    return os.path.normpath(os.path.join(workflow.basedir, path))


def _dataset(name):
    try:
        return config["datasets"][name]
    except KeyError:
        raise ValueError(
            f"config: dataset '{name}' is used but not defined under 'datasets'"
        ) from None


def check_dev():
    """A dev split is not the train split nor an evaluation split of the train dataset, carving needs a BEIR
    train dataset and one of share/count, and the selection metric is computed."""
    if not DEV:
        return
    if DEV["share"] is not None and DEV["count"] is not None:
        raise ValueError(
            "config: data.dev.share and data.dev.count are both set; keep one"
        )
    if DEV_SPLIT == TRAIN_SPLIT:
        raise ValueError(
            f"config: data.dev.split '{DEV_SPLIT}' is the train split (data.train.split)"
        )
    if any(
        t["dataset"] == TRAIN_DS and t["split"] == DEV_SPLIT
        for t in config["data"]["eval"]
    ):
        raise ValueError(
            f"config: data.dev.split '{DEV_SPLIT}' of {TRAIN_DS} is also an evaluation target (data.eval); "
            "choices are made on dev and reported on splits never tuned on"
        )
    if CARVED and _dataset(TRAIN_DS)["kind"] != "beir":
        raise ValueError(
            f"config: data.dev.share/count carve a dev split from a BEIR train dataset; {TRAIN_DS} is of kind "
            f"{_dataset(TRAIN_DS)['kind']} (set data.dev.split to one of its own splits)"
        )
    if SELECT_METRIC not in config["eval"]["metrics"]:
        raise ValueError(
            f"config: eval.select_metric '{SELECT_METRIC}' is not in eval.metrics"
        )


for _target in [config["data"]["train"], *config["data"]["eval"]]:
    _dataset(_target["dataset"])
check_dev()


def carved(wildcards):
    """Whether a qrels job writes a carved split: the dev split, or the train split it was carved from."""
    return (
        CARVED
        and wildcards.dataset == TRAIN_DS
        and wildcards.split in (TRAIN_SPLIT, DEV_SPLIT)
    )


def carve_args(wildcards):
    """The qrels step's carve options (data.dev), or none."""
    if not carved(wildcards):
        return ""
    keep = "dev" if wildcards.split == DEV_SPLIT else "train"
    size = (
        f"--dev-share {DEV['share']}"
        if DEV["share"] is not None
        else f"--dev-count {DEV['count']}"
    )
    return f"--dev-keep {keep} {size} --dev-seed {DEV['seed']}"


def source_dir(wildcards):
    """The BEIR folder of a dataset: its `path`, the mirror's copy, or the download."""
    ds = _dataset(wildcards.dataset)
    if ds["path"]:
        return repo_path(ds["path"])
    mirror = config["data"]["mirror"]
    if mirror and Path(repo_path(mirror), wildcards.dataset, "corpus.jsonl").exists():
        return f"{repo_path(mirror)}/{wildcards.dataset}"
    if not ds.get("url"):
        raise ValueError(
            f"config: dataset '{wildcards.dataset}' has no path, no mirror copy and no url"
        )
    return f"{config['download_dir']}/{wildcards.dataset}"


def lotte_source(wildcards):
    """A LoTTE dataset's folder: its `path` (the release's root or the <domain>/<split> folder), else the
    unpacked release archive."""
    ds = _dataset(wildcards.dataset)
    if ds["path"]:
        return repo_path(ds["path"])
    return f"{config['download_dir']}/lotte/lotte"


def lotte_args(name, split=None):
    """The LoTTE domain, split and query set of a dataset, as command-line options; an evaluation split
    other than the dataset's LoTTE split is refused."""
    ds = _dataset(name)
    if "domain" not in ds:
        raise ValueError(f"config: datasets.{name}.domain is required (kind lotte)")
    lotte_split, query_set = ds.get("split", "test"), ds.get("query_set", "forum")
    if split is not None and split != lotte_split:
        raise ValueError(
            f"config: dataset '{name}' is LoTTE's {lotte_split} split (datasets.{name}.split); "
            f"it has no split '{split}'"
        )
    return f"--domain {ds['domain']} --split {lotte_split} --query-set {query_set}"


def msmarco_path(dataset, name):
    """A raw MS MARCO file of `dataset`, from its `path` when set, else downloaded."""
    ds = _dataset(dataset)
    if ds["path"]:
        return f"{repo_path(ds['path'])}/{name}"
    return f"{config['download_dir']}/{dataset}/{name}"


def msmarco_file(name):
    """Input function: a raw MS MARCO file (msmarco_path) of the job's dataset."""
    return lambda wildcards: msmarco_path(wildcards.dataset, name)
