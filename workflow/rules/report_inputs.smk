# Inputs and targets of the report rules (report.smk).


def uses_dro() -> bool:
    """DRO recipes log cluster weights; a config without `dro.type` does not use DRO."""
    return config.get("dro", {}).get("type", "none") != "none"


def train_logs() -> list[str]:
    """Every trained round's log (an input function's body: the rounds may wait on dev decisions)."""
    return expand(rules.train.output.log_csv, vdir="", round=trained_rounds()[1:])


def benchmark_files() -> list[str]:
    """Benchmark TSVs of the jobs the DAG runs: train for every round; encode and retrieve for every round
    on each evaluation target, and for rounds 1..R-1 on the train split (their runs mine the next round);
    BM25 on each evaluation target and, when it gives round 1's negatives (a round is trained), on the train split.
    """
    train_target = (TRAIN_DS, TRAIN_SPLIT)
    eval_targets = {(t["dataset"], t["split"]) for t in config["data"]["eval"]}
    rounds = trained_rounds()
    runs = {(r, ds, split) for ds, split in eval_targets for r in rounds}
    runs |= {(r, *train_target) for r in rounds[1:-1]}
    bm25 = eval_targets | (
        {train_target}
        if config["negatives"]["source"] == "bm25" and ROUNDS >= 1
        else set()
    )
    return [
        *expand(rules.train.benchmark, vdir="", round=rounds[1:]),
        *[
            path
            for r, ds in sorted({(r, ds) for r, ds, _ in runs})
            for path in expand(
                rules.encode.benchmark,
                vdir="",
                dense=f"round{r}",
                dataset=ds,
                shard=range(SHARDS),
            )
        ],
        *[
            rules.retrieve.benchmark.format(
                vdir="", dense=f"round{r}", dataset=ds, split=sp
            )
            for r, ds, sp in sorted(runs)
        ],
        *[rules.bm25.benchmark.format(dataset=ds, split=sp) for ds, sp in sorted(bm25)],
    ]


def report_targets() -> list[str]:
    targets = [
        out(layout.report("summary.html")),
        out(layout.report("metrics.png")),
        *([out(layout.report("training_loss.png"))] if ROUNDS >= 1 else []),
        out(layout.report("runtimes.png")),
    ]
    return targets + ([out(layout.report("dro_weights.png"))] if uses_dro() else [])
