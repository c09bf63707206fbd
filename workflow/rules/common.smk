import dataclasses
import json
import os
import re
import shlex
from pathlib import Path

# Each rule's `code` param is step_fingerprint(<its dr_core command>): editing that code reruns the rule.
from dr_core.negatives import MineSettings
from dr_core.settings import settings_argv
from dr_core.fingerprint import step_fingerprint
from dr_core.data.msmarco.files import RAW_FILES
from dr_core.tokenization import PASSAGE_TEMPLATE, check_template
from snakemake.utils import validate


def validate_config():
    """Validate (and fill defaults into) the config against the schema, read with libyaml and handed to
    Snakemake's validate as JSON: Snakemake reads a YAML schema in pure Python, 0.25-0.5 s of every
    invocation (even `-n` with nothing to do), and JSON in C."""
    import tempfile
    import yaml

    schema = Path(workflow.basedir, "workflow", "schemas", "config.schema.yaml")
    with open(schema, encoding="utf-8") as f:
        loaded = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    with tempfile.NamedTemporaryFile("w", suffix=".schema.json") as tmp:
        json.dump(loaded, tmp)
        tmp.flush()
        validate(config, schema=tmp.name)


validate_config()


def resolve_templates():
    """model.template is the older name of model.passage_template: read it, refuse a conflict, keep both
    keys equal (rules read either), and check every template's fields."""
    m = config["model"]
    if m["template"] is not None:
        if m["passage_template"] not in (PASSAGE_TEMPLATE, m["template"]):
            raise ValueError(
                "config: model.template (older name of model.passage_template) and model.passage_template "
                "are both set and differ; keep model.passage_template only"
            )
        m["passage_template"] = m["template"]
    m["template"] = m["passage_template"]
    check_template(m["query_template"], {"text"}, "model.query_template")
    check_template(m["passage_template"], {"title", "text"}, "model.passage_template")
    check_template(
        m["passage_template_untitled"], {"text"}, "model.passage_template_untitled"
    )


resolve_templates()


def check_rank_windows():
    """A negatives window must fit in the ranking it samples from: rank_min <= rank_max <= depth."""
    for stage in ("first_stage", "mine"):
        w = config["negatives"][stage]
        if w["rank_max"] > w["depth"]:
            raise ValueError(
                f"config: negatives.{stage}.rank_max ({w['rank_max']}) exceeds negatives.{stage}.depth "
                f"({w['depth']}), the length of the ranking it samples from"
            )
        if w["rank_min"] > w["rank_max"]:
            raise ValueError(
                f"config: negatives.{stage}.rank_min ({w['rank_min']}) exceeds negatives.{stage}.rank_max "
                f"({w['rank_max']})"
            )


check_rank_windows()

OUT = f"{config['results_dir']}/{config['name']}"
TRAIN_DS = config["data"]["train"]["dataset"]
TRAIN_SPLIT = config["data"]["train"]["split"]
DEV = config["data"]["dev"]
CARVED = DEV["share"] is not None or DEV["count"] is not None
DEV_SPLIT = DEV["split"] or ("dev" if CARVED else None)
DEV = DEV if DEV_SPLIT else None
SELECT_METRIC = config["eval"]["select_metric"]


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


def parse_rounds():
    """ance.rounds as (max rounds, stopping rule or None), the rule's defaults filled."""
    rounds = config["ance"]["rounds"]
    if not isinstance(rounds, dict):
        return rounds, None
    stop = {
        "patience": 1,
        "min_delta": 0.0,
        **rounds,
    }  # the schema checked their values
    if not DEV:
        raise ValueError(
            "config: ance.rounds {max, patience} stops on the dev metric; set data.dev"
        )
    return stop["max"], stop


ROUNDS, STOPPING = parse_rounds()
SHARDS = config["encode"]["num_shards"]


# Dense systems named in hybrid.rounds and merge.rounds: a round number, `selected` (the round chosen on dev) or
# a merged model (wise-round<r>, wise-selected: merge.alpha of the round, the rest the base model's weights).
def dense_name(entry):
    return f"round{entry}" if isinstance(entry, int) else entry


MERGED = [f"wise-{dense_name(r)}" for r in config["merge"]["rounds"]]
HYBRID_DENSE = [dense_name(r) for r in config["hybrid"]["rounds"]]
RERANKED = config["reranker"]["systems"]


def systems(rounds):
    """Every ranking system that is evaluated, for trained rounds `rounds`: BM25, the base model (round 0,
    zero-shot), each round, `selected` (with data.dev), the merged models, BM25 fused with a dense system
    (hybrid.rounds; fusion.smk), and any of these re-scored by the cross-encoder (reranker.systems; rerank.smk).
    """
    out = (
        ["bm25"]
        + [f"round{r}" for r in rounds]
        + (["selected"] if DEV else [])
        + MERGED
    )
    for dense in HYBRID_DENSE:
        m = re.fullmatch(r"round(\d+)", dense)
        if m is None or int(m.group(1)) in rounds:
            out.append(f"bm25+{dense}")
    return out + [f"{s}+rerank" for s in RERANKED if s in out]


def check_systems():
    """Named systems exist: rounds within ance.rounds, `selected` only with a dev split, reranked ones."""
    named = [*HYBRID_DENSE, *(m.removeprefix("wise-") for m in MERGED), *RERANKED]
    if not DEV and any("selected" in name for name in named):
        raise ValueError(
            "config: the system `selected` (hybrid.rounds, merge.rounds) is chosen on dev; set data.dev"
        )
    for key, names in (
        ("hybrid.rounds", HYBRID_DENSE),
        ("merge.rounds", [m.removeprefix("wise-") for m in MERGED]),
    ):
        late = [
            n for n in names if re.fullmatch(r"round(\d+)", n) and int(n[5:]) > ROUNDS
        ]
        if late:
            raise ValueError(f"config: {key} has {late} past ance.rounds ({ROUNDS})")
    every = systems(range(ROUNDS + 1))
    unknown = [b for b in config["eval"]["baselines"] if b not in every]
    if unknown:
        raise ValueError(
            f"config: eval.baselines has {unknown}, not among this recipe's systems {every}"
        )
    if set(RERANKED) - set(every):
        raise ValueError(
            f"config: reranker.systems has {sorted(set(RERANKED) - set(every))}, not among this recipe's "
            f"systems {every}"
        )


check_systems()
GPU_RULES = {
    "train",
    "encode",
    "retrieve",
    "positive_scores",
    "teacher_scores",
    "cluster",
    "train_reranker",
    "rerank",
}
CPU_ENV = "../../envs/cpu.yaml"
GPU_ENV = "../../envs/gpu.yaml"


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


wildcard_constraints:
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


BUILTIN_RESOURCES = {
    "default": {"threads": 2, "mem_mb": 4000, "runtime": 60, "gpu": 0},
    "gpu_default": {"threads": 2, "mem_mb": 16000, "runtime": 720, "gpu": 1},
}


def res(rule_name, key):
    """A resource of a rule: config `resources.<rule>`, else `default`/`gpu_default`, else built in."""
    group = "gpu_default" if rule_name in GPU_RULES else "default"
    for source in (
        config["resources"].get(rule_name, {}),
        config["resources"].get(group, {}),
        BUILTIN_RESOURCES[group],
    ):
        if key in source:
            return source[key]


def rule_resources(rule_name):
    return dict(
        mem_mb=res(rule_name, "mem_mb"),
        runtime=res(rule_name, "runtime"),
        gpu=res(rule_name, "gpu"),
    )


def token_budget(table):
    """Tokens kept at tokenization: the longest of the training and encoding max lengths."""
    key = "p_max_len" if table == "corpus" else "q_max_len"
    return max(config["model"][key], config["encode"][key] or 0)


def is_train_target(wildcards):
    return wildcards.dataset == TRAIN_DS and wildcards.split == TRAIN_SPLIT


def cli_flags(settings, prefix=""):
    """A config section (or a settings dataclass) as its settings dataclass's flags (dr_core.settings), sorted
    and shell-quoted: a changed value changes the rule's params, so the step reruns."""
    items = (
        dataclasses.asdict(settings) if dataclasses.is_dataclass(settings) else settings
    )
    return shlex.join(settings_argv(dict(sorted(items.items())), prefix))


def mine_settings(stage):
    """The mine step's settings for negatives.<stage> (first_stage: round 1 from BM25's run; mine: round r >= 2,
    with a share from BM25's first_stage window); dr_core.negatives decides from them what else it reads.
    """
    neg = config["negatives"]
    window, first = neg[stage], neg["first_stage"]
    return MineSettings(
        rank_min=window["rank_min"],
        rank_max=window["rank_max"],
        n=window["n"],
        seed=neg["seed"],
        bm25_fraction=window.get("bm25_fraction", 0.0),
        bm25_rank_min=first["rank_min"],
        bm25_rank_max=first["rank_max"],
        filter_relative=window["filter"]["relative"],
        filter_margin=window["filter"]["margin"],
    )


def encoder_spec():
    """The model keys that make up dr_core.model.EncoderSpec."""
    m = config["model"]
    keys = (
        "pooling",
        "similarity",
        "q_max_len",
        "p_max_len",
        "untied",
        "projection_dim",
        "query_template",
        "passage_template",
        "passage_template_untitled",
    )
    return {k: m[k] for k in keys}


def model_card(round_):
    """Facts for the model card of round `round_` (dr_core.model_card): recipe, base, data, negatives."""
    neg = config["negatives"]
    if int(round_) == 0:
        negatives = None
    elif int(round_) == 1:
        negatives = (
            "BM25 top ranks"
            if neg["source"] == "bm25"
            else f"{neg['source']} ({first_negatives_file()})"
        )
    else:
        negatives = f"mined with the round-{int(round_) - 1} model"
    info = {
        "recipe": config["name"],
        "base": config["model"]["base"],
        "dataset": TRAIN_DS,
        "split": TRAIN_SPLIT,
        "round": int(round_),
        "negatives": negatives,
        "command": "snakemake --cores all --configfile <this recipe>",
    }
    return json.dumps(info)


def first_negatives_file():
    """The round-1 negatives file when they do not come from BM25."""
    neg = config["negatives"]
    if neg["source"] == "file":
        if not neg["file"]:
            raise ValueError(
                "config: negatives.source is 'file' but negatives.file is not set"
            )
        return repo_path(neg["file"])
    kind = "tevatron" if neg["source"] == "tevatron" else "msmarco"
    if _dataset(TRAIN_DS)["kind"] != kind:
        raise ValueError(
            f"config: negatives.source '{neg['source']}' needs a train dataset of kind {kind}"
        )
    if kind == "tevatron":
        return f"{OUT}/data/{TRAIN_DS}/tevatron.negatives.{TRAIN_SPLIT}.tsv"
    if neg["source"] == "hard_negatives":
        return msmarco_path(TRAIN_DS, "msmarco-hard-negatives.jsonl.gz")
    return f"{OUT}/data/{TRAIN_DS}/triples.negatives.tsv"


def msmarco_path(dataset, name):
    """A raw MS MARCO file of `dataset`, from its `path` when set, else downloaded."""
    ds = _dataset(dataset)
    if ds["path"]:
        return f"{repo_path(ds['path'])}/{name}"
    return f"{config['download_dir']}/{dataset}/{name}"


def msmarco_file(name):
    """Input function: a raw MS MARCO file (msmarco_path) of the job's dataset."""
    return lambda wildcards: msmarco_path(wildcards.dataset, name)


def teacher_scores(wildcards):
    """Teacher scores for round r when the recipe distils or denoises; an empty list otherwise."""
    train, distill = config["train"], config["distill"]
    if not (
        train.get("margin_mse_weight", 0) or train.get("kl_weight", 0) or denoises()
    ):
        return []
    # a published MS MARCO file (RAW_FILES), fetched like the others
    if distill["scores_file"] in RAW_FILES:
        return msmarco_path(TRAIN_DS, distill["scores_file"])
    if distill["scores_file"]:
        return repo_path(distill["scores_file"])
    return f"{OUT}/round{wildcards.round}/teacher_scores.parquet"


def teacher_model():
    """The teacher model, its kind and its config key: distill.teacher, else the reranker (kind cross):
    reranker.model, else the one the workflow trains."""
    distill, reranker = config["distill"], config["reranker"]
    if distill["teacher"]:
        return {
            "model": distill["teacher"],
            "kind": distill["kind"],
            "key": "distill.teacher",
        }
    if reranker["model"]:
        return {"model": reranker["model"], "kind": "cross", "key": "reranker.model"}
    return {"model": f"{OUT}/reranker/model", "kind": "cross", "key": "reranker"}


def trained_reranker(wildcards):
    """The trained reranker when it is needed (no reranker.model); an empty list otherwise."""
    return [] if config["reranker"]["model"] else f"{OUT}/reranker/model"


def teacher_input(wildcards):
    """The trained reranker when it teaches round r: it must train on an earlier round's negatives."""
    if config["distill"]["teacher"] or config["reranker"]["model"]:
        return []
    r, k = int(wildcards.round), config["reranker"]["train_round"]
    if k > r:
        raise ValueError(
            f"config: the reranker trained on round {k}'s negatives (reranker.train_round) cannot teach round "
            f"{r}, which those negatives are mined after; set reranker.train_round <= {r}, distill.teacher or "
            "reranker.model"
        )
    return f"{OUT}/reranker/model"


def denoises():
    """Whether each round's negatives are denoised with the teacher before training."""
    d = config["negatives"]["denoise"]
    return d["margin"] is not None or d["max_score"] is not None


def train_negatives(wildcards):
    """The negatives round r trains on: denoised when the recipe says so."""
    name = "train_negatives.denoised.tsv" if denoises() else "train_negatives.tsv"
    return f"{OUT}/round{wildcards.round}/{name}"


def query_clusters(wildcards):
    """Round r's query clusters when the recipe trains with DRO; an empty list otherwise."""
    if config["dro"]["type"] == "none":
        return []
    return f"{OUT}/round{wildcards.round}/query_clusters.tsv"


def check_index_config():
    """index.nprobe cannot exceed the nlist of an explicit IVF<nlist> index.factory (checked before building)."""
    idx = config["index"]
    match = re.search(r"IVF(\d+)", idx["factory"])
    if idx["nprobe"] is not None and match and idx["nprobe"] > int(match.group(1)):
        raise ValueError(
            f"config: index.nprobe ({idx['nprobe']}) exceeds the {match.group(1)} lists of index.factory "
            f"{idx['factory']!r}"
        )


check_index_config()


def search_args():
    """The retrieve step's search options (index.*), as one command-line string."""
    idx = config["index"]
    args = [f"--query-batch {idx['query_batch']}"]
    args += [f"--nprobe {idx['nprobe']}"] if idx["nprobe"] is not None else []
    args += [f"--ef-search {idx['ef_search']}"] if idx["ef_search"] is not None else []
    args += ["--gpu-fp16"] if idx["gpu_fp16"] else []
    return " ".join(args)


def train_init(wildcards):
    r = int(wildcards.round)
    start = r - 1 if config["ance"]["init"] == "previous" else 0
    return f"{OUT}/round{start}/model"


def emb_shards(dense, dataset):
    """The corpus embedding shards of a dense model on a dataset: emb.npy, ids.txt, ... in shard order."""
    return [
        f"{OUT}/{dense}/{dataset}/emb/shard{s}.{ext}"
        for s in range(SHARDS)
        for ext in ("npy", "ids.txt")
    ]


def launcher(wildcards, resources):
    """torchrun for a multi-GPU job, plain python otherwise."""
    if (
        resources.gpu > 1
    ):  # `--` keeps torchrun from reading our options (it would take --log as its own)
        return f"torchrun --standalone --nproc_per_node {resources.gpu} -m --"
    return "python -m"


def eval_metric_files():
    """Metrics of every system on every evaluation target, in table order (an input function's body: the
    rounds may wait on dev decisions)."""
    every = systems(trained_rounds())
    return [
        f"{OUT}/{system}/{t['dataset']}/metrics.{t['split']}.json"
        for t in config["data"]["eval"]
        for system in every
    ]


def all_targets():
    msmarco_runs = [
        f"{OUT}/{system}/{t['dataset']}/run.{t['split']}.msmarco.tsv"
        for t in config["data"]["eval"]
        if _dataset(t["dataset"])["kind"] == "msmarco"
        for system in systems(trained_rounds())
    ]
    dev = [f"{OUT}/selected/choice.json"] if DEV else []
    return [
        f"{OUT}/summary.tsv",
        *dev,
        *msmarco_runs,
        *report_targets(),
        *card_targets(),
    ]


def print_summary():
    summary = Path(OUT, "summary.tsv")
    if summary.exists():
        print(f"\n{summary}:\n{summary.read_text()}")
    beir = Path(OUT, "summary.beir.tsv")
    if beir.exists():
        print(
            f"\n{beir} (nDCG@10 per evaluation dataset, avg = their mean; eval.metrics' first if nDCG@10 is not among them):\n{beir.read_text()}"
        )
