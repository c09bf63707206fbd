# Settings and input functions of the hybrid systems `bm25+<ranker>` (fusion.smk: BM25 fused with a round's, the
# selected round's or a merged model's dense run; the convex weight, unless fixed, tuned per ranker on the train
# dataset's tune split (its dev split when there is one), never on an evaluation split) and of round r >= 2's
# mining from them or with a share of BM25 negatives (negatives.smk).
HYBRID = config["hybrid"]
TUNE_SPLIT = HYBRID["tune_split"] or DEV_SPLIT or TRAIN_SPLIT
TUNED = HYBRID["method"] == "convex" and HYBRID["weight"] is None
# The fuse step's tuned weight file (a fixed weight is the setting hybrid.weight, --weight).
WEIGHT_ARG = "--weight-file {input.weight:q}" if TUNED else ""
EVAL_TARGETS = {(t["dataset"], t["split"]) for t in config["data"]["eval"]}
MINE = config["negatives"]["mine"]


def mine_inputs(wildcards):
    """Round r-1's ranking of the train queries (dense, or fused with BM25), qrels, and BM25's run when mixing."""
    prev = f"round{int(wildcards.round) - 1}"
    system = f"bm25+{prev}" if MINE["from"] == "hybrid" else prev
    inputs = {
        "run": out(layout.run(system, TRAIN_DS, TRAIN_SPLIT)),
        "qrels": TRAIN_QRELS,
    }
    if mine_settings("mine").filters:
        inputs["positives"] = out(layout.positive_scores(wildcards.round))
    if mine_settings("mine").mixes_bm25:
        inputs["bm25"] = out(layout.run("bm25", TRAIN_DS, TRAIN_SPLIT))
    return inputs


def mine_inputs_shell(stage):
    """The mine step's options naming the inputs its settings need (mine_settings: BM25's run, the positives'
    scores)."""
    settings = mine_settings(stage)
    return (" --bm25-run {input.bm25:q}" if settings.mixes_bm25 else "") + (
        " --positive-scores {input.positives:q}" if settings.filters else ""
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
    mined = MINE["from"] == "hybrid" and ROUNDS >= 2
    targets = set()
    if HYBRID["rounds"]:
        targets |= EVAL_TARGETS
    if mined:
        targets.add((TRAIN_DS, TRAIN_SPLIT))
    if TUNED and targets:
        targets.add((TRAIN_DS, TUNE_SPLIT))
    return sorted(targets)


def check_hybrid():
    """The weight is not tuned on test, every fused run is hybrid.depth deep,
    and a BM25 share of mined negatives has a number of negatives to share."""
    if mine_settings("mine").filters and MINE["from"] == "hybrid":
        raise ValueError(
            "config: negatives.mine.filter compares the mining model's scores; with negatives.mine.from: hybrid "
            "the fused scores have no positive's score to compare with (use from: dense)"
        )
    if mine_settings("first_stage").filters and config["negatives"]["source"] != "bm25":
        raise ValueError(
            "config: negatives.first_stage.filter needs negatives.source: bm25 (it uses BM25's scores)"
        )
    if MINE["bm25_fraction"] > 0 and MINE["n"] <= 0:
        raise ValueError(
            "config: negatives.mine.bm25_fraction > 0 needs negatives.mine.n > 0"
        )
    if TUNED and (TRAIN_DS, TUNE_SPLIT) in EVAL_TARGETS and fused_targets():
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
    """The BM25 and round r runs of a target, and the tuned weight when there is one."""
    runs = {
        name: out(layout.run(system, wildcards.dataset, wildcards.split))
        for name, system in (("bm25", "bm25"), ("dense", wildcards.ranker))
    }
    return runs | (
        {"weight": out(layout.fusion_weight(wildcards.ranker))} if TUNED else {}
    )
