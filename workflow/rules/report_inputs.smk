# Inputs and targets of the report rules (report.smk).
REPORT = f"{OUT}/report"


def uses_dro() -> bool:
    """DRO recipes log cluster weights; a config without `dro.type` does not use DRO."""
    return config.get("dro", {}).get("type", "none") != "none"


def train_logs() -> list[str]:
    return expand(rules.train.output.log_csv, round=range(1, ROUNDS + 1))


def benchmark_files() -> list[str]:
    """Benchmark TSVs of the jobs the DAG runs: train for every round; encode for every round on each
    evaluation dataset, and for rounds 1..R-1 on the train dataset (their runs mine the next round).
    """
    pairs = {
        (r, t["dataset"]) for t in config["data"]["eval"] for r in range(ROUNDS + 1)
    }
    pairs |= {(r, TRAIN_DS) for r in range(1, ROUNDS)}
    encode = [
        expand(rules.encode.benchmark, round=r, dataset=ds, shard=range(SHARDS))
        for r, ds in sorted(pairs)
    ]
    return [
        *expand(rules.train.benchmark, round=range(1, ROUNDS + 1)),
        *sum(encode, []),
    ]


def report_targets() -> list[str]:
    targets = [
        f"{REPORT}/summary.html",
        f"{REPORT}/metrics.png",
        f"{REPORT}/training_loss.png",
        f"{REPORT}/runtimes.png",
    ]
    return targets + ([f"{REPORT}/dro_weights.png"] if uses_dro() else [])
