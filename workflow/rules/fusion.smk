# Hybrid systems `bm25+round<r>`: BM25 fused with round r's dense run (hybrid.*). The convex weight, unless fixed,
# is tuned per round on the train dataset's tune split (train or dev), never on an evaluation split.
HYBRID = config["hybrid"]
TUNE_SPLIT = HYBRID["tune_split"] or TRAIN_SPLIT
TUNED = HYBRID["method"] == "convex" and HYBRID["weight"] is None
# The weight's argument of the fuse step: the tuned weight file, the fixed weight, or none (RRF).
WEIGHT_ARG = (
    "--weight-file {input.weight:q}"
    if TUNED
    else "--weight {params.weight}" if HYBRID["method"] == "convex" else ""
)


def run_depths(dataset, split):
    """Config keys and values of the depths of the BM25 and dense runs of a target."""
    if dataset == TRAIN_DS and split == TRAIN_SPLIT:
        return {
            f"negatives.{stage}.depth": config["negatives"][stage]["depth"]
            for stage in ("first_stage", "mine")
        }
    return {"eval.depth": config["eval"]["depth"]}


def fused_targets():
    """(dataset, split) pairs whose runs get fused: eval targets, the tune split, the train split when mined."""
    mined = config["negatives"]["mine"]["from"] == "hybrid" and ROUNDS >= 2
    targets = set()
    if HYBRID["rounds"]:
        targets |= {(t["dataset"], t["split"]) for t in config["data"]["eval"]}
    if mined:
        targets.add((TRAIN_DS, TRAIN_SPLIT))
    if TUNED and targets:
        targets.add((TRAIN_DS, TUNE_SPLIT))
    return sorted(targets)


def check_hybrid():
    """Fused rounds are trained rounds, and every fused run is at least hybrid.depth deep."""
    late = [r for r in HYBRID["rounds"] if r > ROUNDS]
    if late:
        raise ValueError(
            f"config: hybrid.rounds has round(s) {late} past ance.rounds ({ROUNDS})"
        )
    if TUNED and any(
        t == {"dataset": TRAIN_DS, "split": TUNE_SPLIT} for t in config["data"]["eval"]
    ):
        raise ValueError(
            f"config: hybrid.tune_split '{TUNE_SPLIT}' is an evaluation split of {TRAIN_DS}; "
            "tune the weight on train or dev queries"
        )
    for dataset, split in fused_targets():
        for key, depth in run_depths(dataset, split).items():
            if depth < HYBRID["depth"]:
                raise ValueError(
                    f"config: hybrid.depth ({HYBRID['depth']}) exceeds {key} ({depth}), the depth of the "
                    f"{dataset}/{split} runs that are fused; lower hybrid.depth or raise {key}"
                )


check_hybrid()


def fuse_inputs(wildcards):
    runs = {
        name: f"{OUT}/{system}/{wildcards.dataset}/run.{wildcards.split}.trec"
        for name, system in (("bm25", "bm25"), ("dense", f"round{wildcards.round}"))
    }
    return runs | (
        {"weight": f"{OUT}/bm25+round{wildcards.round}/fusion.json"} if TUNED else {}
    )


rule fuse:
    input:
        unpack(fuse_inputs),
    output:
        f"{OUT}/bm25+round{{round}}/{{dataset}}/run.{{split}}.trec",
    log:
        f"{OUT}/logs/fuse/bm25+round{{round}}.{{dataset}}.{{split}}.log",
    conda:
        CPU_ENV
    threads: res("fuse", "threads")
    resources:
        **rule_resources("fuse"),
    params:
        method=HYBRID["method"],
        weight=HYBRID["weight"],
        rrf_k=HYBRID["rrf_k"],
        depth=HYBRID["depth"],
        version=VERSION,
    shell:
        "python -m dr_core fuse --bm25 {input.bm25:q} --dense {input.dense:q} --method {params.method} "
        f"{WEIGHT_ARG} "
        "--rrf-k {params.rrf_k} --depth {params.depth} --tag bm25+round{wildcards.round} --out {output:q} "
        "> {log:q} 2>&1"


rule fusion_weight:
    input:
        bm25=f"{OUT}/bm25/{TRAIN_DS}/run.{TUNE_SPLIT}.trec",
        dense=f"{OUT}/round{{round}}/{TRAIN_DS}/run.{TUNE_SPLIT}.trec",
        qrels=f"{OUT}/data/{TRAIN_DS}/qrels.{TUNE_SPLIT}.parquet",
    output:
        f"{OUT}/bm25+round{{round}}/fusion.json",
    log:
        f"{OUT}/logs/fuse/bm25+round{{round}}.weight.log",
    conda:
        CPU_ENV
    threads: res("fusion_weight", "threads")
    resources:
        **rule_resources("fusion_weight"),
    params:
        depth=HYBRID["depth"],
        version=VERSION,
    shell:
        "python -m dr_core fusion-weight --bm25 {input.bm25:q} --dense {input.dense:q} --qrels {input.qrels:q} "
        "--depth {params.depth} --out {output:q} > {log:q} 2>&1"
