# Input functions of training a round: its init model, negatives (round 1's from a file, or denoised), teacher
# scores and the reranker that teaches, DRO's query clusters, and the corpus embedding shards positives are
# scored with.


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
        return out(layout.tevatron_negatives(TRAIN_DS, TRAIN_SPLIT))
    if neg["source"] == "hard_negatives":
        return msmarco_path(TRAIN_DS, "msmarco-hard-negatives.jsonl.gz")
    return out(layout.triples_negatives(TRAIN_DS))


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
    return out(layout.teacher_scores(wildcards.round))


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
    return {"model": TRAINED_RERANKER, "kind": "cross", "key": "reranker"}


def trained_reranker(wildcards):
    """The trained reranker when it is needed (no reranker.model); an empty list otherwise."""
    return [] if config["reranker"]["model"] else TRAINED_RERANKER


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
    return TRAINED_RERANKER


def denoises():
    """Whether each round's negatives are denoised with the teacher before training."""
    d = config["negatives"]["denoise"]
    return d["margin"] is not None or d["max_score"] is not None


def train_negatives(wildcards):
    """The negatives round r trains on (denoised when the recipe says so), in the folder of the job's variant."""
    r = int(wildcards.round)
    path = layout.train_negatives(r, denoised=denoises())
    return vout(variant(wildcards), sweeps.negatives_keys(r), path)


def query_clusters(wildcards):
    """Round r's query clusters when the job's variant trains with DRO; an empty list otherwise."""
    if vconfig(wildcards)["dro"]["type"] == "none":
        return []
    r = int(wildcards.round)
    return vout(variant(wildcards), sweeps.clusters_keys(r), layout.query_clusters(r))


def train_init(wildcards):
    r = int(wildcards.round)
    start = r - 1 if config["ance"]["init"] == "previous" else 0
    return vout(variant(wildcards), sweeps.model_keys(start), layout.round_model(start))


def emb_shards(dense, dataset, name=BASE_VARIANT):
    """The corpus embedding shards of a dense model (of variant `name`) on a dataset: emb.npy, ids.txt, ... in
    shard order."""
    return [
        vout(name, dense_keys(dense), path(dense, dataset, s))
        for s in range(SHARDS)
        for path in (layout.emb_shard, layout.emb_ids)
    ]


def retrieve_inputs(wildcards):
    """The dense model, its index and shard ids: in the model's folder, which a run of the train queries (its
    depth is negatives.mine.depth) may share with other variants."""
    name, dense, ds = variant(wildcards), wildcards.dense, wildcards.dataset
    folder = vfolder(name, dense_keys(dense))
    return {
        "model": out(folder + layout.model(dense)),
        "index": out(folder + layout.index(dense, ds)),
        "meta": out(folder + layout.index_meta(dense, ds)),
        "ids": [out(folder + layout.emb_ids(dense, ds, s)) for s in range(SHARDS)],
    }
