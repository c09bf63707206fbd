# A sweep's variants in the rules (dr_core.sweep): a rule whose files depend on a sweepable key has the wildcard
# `vdir` first in its paths, '' (the shared tree) or `variants/<variant>/`; its params read that variant's config
# (vconfig), and its input functions place each input by the keys that input depends on (vout). Without a sweep,
# vdir is '' everywhere and the paths are the recipe's own.


def variant(wildcards):
    """The variant a job in folder `wildcards.vdir` runs for (the first variant owning that folder)."""
    return sweeps.variant_of(wildcards.vdir, BASE_VARIANT)


def vconfig(wildcards):
    """The config of the job's variant: what its params read instead of `config` for sweepable keys."""
    return VARIANTS[variant(wildcards)]


def vfolder(name, keys):
    """The folder ('' or `variants/<owner>/`) of variant `name`'s file that depends on config `keys`."""
    return sweeps.folder(VARIANTS, BASE_VARIANT, name, keys)


def vout(name, keys, path):
    """A results file (`path`, a dr_core.layout path) of variant `name` that depends on `keys`."""
    return out(vfolder(name, keys) + path)


def dense_keys(dense, train_target=False):
    """The keys a dense system's files depend on (its model, embeddings, index; a run also on the depth of the
    train queries' runs): round r's (dr_core.sweep.run_keys), a merged model's (wise-round<r>: round r's), every
    sweepable key for `selected` and wise-selected."""
    r = layout.round_of(dense.removeprefix("wise-"))
    return sweeps.run_keys(r, train_target) if r is not None else sweeps.EVERY


def weight_keys(ranker):
    """The keys the tuned weight of `bm25+<ranker>` depends on: the ranker's run of the tune split."""
    return dense_keys(ranker, TUNE_SPLIT == TRAIN_SPLIT)


def system_keys(system, train_target=False):
    """The keys a system's runs (and metrics) depend on: none for BM25, the dense system's, and for a hybrid also
    its tuned weight's."""
    if system == "bm25":
        return ()
    ranker = system.removeprefix("bm25+")
    keys = dense_keys(ranker, train_target)
    if ranker != system and TUNED:
        keys = (*keys, *weight_keys(ranker))
    return keys


def check_sweep():
    """What a sweep cannot do yet: each variant's systems are bm25, its rounds and `selected` (chosen on dev);
    the systems built on them (merged, hybrid, reranked) and the teacher-driven steps stay per recipe.
    """
    if not SWEEP:
        return
    if not DEV:
        raise ValueError(
            "config: a sweep compares the variants' `selected` rounds, chosen on dev; set data.dev"
        )
    for key, on in (
        ("reranker.systems", config["reranker"]["systems"]),
        ("distill.teacher", config["distill"]["teacher"]),
        ("hub.repo_id", config["hub"]["repo_id"]),
    ):
        if on:
            raise ValueError(
                f"config: a sweep does not yet run {key} per variant; leave it unset in a sweep"
            )
    for name, recipe in VARIANTS.items():
        neg, train = recipe["negatives"], recipe["train"]
        if neg["mine"]["from"] == "hybrid":
            raise ValueError(
                f"sweep: variant '{name}' sets negatives.mine.from: hybrid, not yet run per variant"
            )
        denoise = (
            neg["denoise"]["margin"] is not None
            or neg["denoise"]["max_score"] is not None
        )
        if train.get("margin_mse_weight", 0) or train.get("kl_weight", 0) or denoise:
            raise ValueError(
                f"sweep: variant '{name}' distils or denoises with a teacher (train.margin_mse_weight, "
                "train.kl_weight, negatives.denoise), not yet run per variant"
            )


def sweep_targets():
    """With a sweep: every variant's summary and the comparison of the variants (sweep.smk)."""
    if not SWEEP:
        return []
    summaries = [vout(name, sweeps.EVERY, layout.summary()) for name in VARIANTS]
    return [*summaries, out(layout.sweep_table())]


def sweep_choices(wildcards):
    """Each variant's round choice (select_round), in variant order."""
    return [vout(name, sweeps.EVERY, layout.choice()) for name in VARIANTS]


def sweep_tests(wildcards):
    """Each variant's `selected` system's metrics on every evaluation target, variant by variant."""
    return [
        vout(name, sweeps.EVERY, layout.metrics("selected", t["dataset"], t["split"]))
        for name in VARIANTS
        for t in config["data"]["eval"]
    ]


check_sweep()
