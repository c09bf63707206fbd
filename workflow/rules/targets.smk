# What `snakemake` builds by default (rule all), and the summary printed after a run.


def eval_metric_files(name=BASE_VARIANT):
    """Metrics of every system of variant `name` on every evaluation target, in table order (an input function's
    body: the rounds may wait on dev decisions)."""
    every = systems(trained_rounds(name))
    return [
        vout(
            name, system_keys(system), layout.metrics(system, t["dataset"], t["split"])
        )
        for t in config["data"]["eval"]
        for system in every
    ]


def all_targets():
    msmarco_runs = [
        out(layout.msmarco_run(system, t["dataset"], t["split"]))
        for t in config["data"]["eval"]
        if _dataset(t["dataset"])["kind"] == "msmarco"
        for system in systems(trained_rounds())
    ]
    dev = [out(layout.choice())] if DEV else []
    return [
        out(layout.summary()),
        *dev,
        *msmarco_runs,
        *report_targets(),
        *card_targets(),
    ]


def print_summary():
    summary = Path(out(layout.summary()))
    if summary.exists():
        print(f"\n{summary}:\n{summary.read_text()}")
    table = Path(out(layout.sweep_table()))
    if SWEEP and table.exists():
        print(
            f"\n{table} (each variant's selected round, chosen on dev; best = the best dev figure; "
            f"p_vs_{BASE_VARIANT}: paired t-test against the base variant, Holm over the variants):\n"
            f"{table.read_text()}"
        )
    beir = Path(out(layout.summary_beir()))
    if beir.exists():
        print(
            f"\n{beir} (nDCG@10 per evaluation dataset, avg = their mean; eval.metrics' first if nDCG@10 is not among them):\n{beir.read_text()}"
        )
