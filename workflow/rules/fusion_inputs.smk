# Settings and input functions of the hybrid systems `bm25+<ranker>` (fusion.smk: BM25 fused with a round's, the
# selected round's or a merged model's dense run; the convex weight, unless fixed, tuned per ranker on the train
# dataset's tune split (its dev split when there is one), never on an evaluation split).
HYBRID = config["hybrid"]
TUNE_SPLIT = HYBRID["tune_split"] or DEV_SPLIT or TRAIN_SPLIT
TUNED = HYBRID["method"] == "convex" and HYBRID["weight"] is None
# The fuse step's tuned weight file (a fixed weight is the setting hybrid.weight, --weight).
WEIGHT_ARG = "--weight-file {input.weight:q}" if TUNED else ""
EVAL_TARGETS = {(t["dataset"], t["split"]) for t in config["data"]["eval"]}


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
    """The weight is not tuned on test, and every fused run is hybrid.depth deep."""
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
    """The BM25 and ranker runs of a target, and the tuned weight when there is one (of the job's variant)."""
    name, ranker = variant(wildcards), wildcards.ranker
    dataset, split = wildcards.dataset, wildcards.split
    dense_run = layout.run(ranker, dataset, split)
    runs = {
        "bm25": out(layout.run("bm25", dataset, split)),
        "dense": vout(name, dense_keys(ranker, is_train_target(wildcards)), dense_run),
    }
    weight = vout(name, weight_keys(ranker), layout.fusion_weight(ranker))
    return runs | ({"weight": weight} if TUNED else {})


def tune_run(wildcards):
    """The ranker's run of the tune split, which its fusion weight is tuned on (of the job's variant)."""
    run = layout.run(wildcards.ranker, TRAIN_DS, TUNE_SPLIT)
    return vout(variant(wildcards), weight_keys(wildcards.ranker), run)
