# The mine steps' settings and inputs (negatives.smk): every decision on negatives.first_stage and negatives.mine
# is made here or by dr_core.negatives.MineSettings, which the rules render as flags. Round 1 samples BM25's run;
# round r >= 2 samples round r-1's dense run (or its hybrid with BM25: mine.from), optionally with a share of
# BM25's first-stage window (mine.bm25_fraction) and the false-negative filter (<stage>.filter).
from dr_core.negatives import MineSettings

MINE = config["negatives"]["mine"]


def mine_settings(stage, recipe=None):
    """The mine step's settings for negatives.<stage> (first_stage: round 1 from BM25's run; mine: round r >= 2,
    with a share from BM25's first_stage window) of `recipe` (a variant's config; the recipe's by default);
    dr_core.negatives decides from them what else it reads.
    """
    neg = (recipe or config)["negatives"]
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


def mine_inputs(wildcards):
    """Round r-1's ranking of the train queries (dense, or fused with BM25), qrels, and BM25's run when mixing,
    each in the folder of the job's variant that it depends on."""
    name, r = variant(wildcards), int(wildcards.round)
    prev = layout.round_name(r - 1)
    settings = mine_settings("mine", vconfig(wildcards))
    hybrid = vconfig(wildcards)["negatives"]["mine"]["from"] == "hybrid"
    run = layout.run(f"bm25+{prev}" if hybrid else prev, TRAIN_DS, TRAIN_SPLIT)
    inputs = {
        "run": vout(name, sweeps.run_keys(r - 1, True), run),
        "qrels": TRAIN_QRELS,
    }
    if settings.filters:
        inputs["positives"] = vout(
            name, sweeps.model_keys(r - 1), layout.positive_scores(r)
        )
    if settings.mixes_bm25:
        inputs["bm25"] = out(layout.run("bm25", TRAIN_DS, TRAIN_SPLIT))
    return inputs


def first_stage_positives(wildcards):
    """BM25's scores of the judged positives when round 1's negatives are filtered (shared by every variant)."""
    if mine_settings("first_stage", vconfig(wildcards)).filters:
        return out(layout.positive_scores(1))
    return []


def mine_input_options(stage):
    """A params function: the mine step's options naming the inputs its settings need (mine_settings: BM25's
    run, the positives' scores) for the job's variant."""

    def options(wildcards, input):
        settings = mine_settings(stage, vconfig(wildcards))
        flags = ["--bm25-run", input.bm25] if settings.mixes_bm25 else []
        flags += ["--positive-scores", input.positives] if settings.filters else []
        return shlex.join(flags)

    return options


def check_mining(recipe, where):
    """Settings the mine step cannot honour, refused by key before any output."""
    mine = recipe["negatives"]["mine"]
    if mine_settings("mine", recipe).filters and mine["from"] == "hybrid":
        raise ValueError(
            f"{where}: negatives.mine.filter compares the mining model's scores; with negatives.mine.from: hybrid "
            "the fused scores have no positive's score to compare with (use from: dense)"
        )
    if (
        mine_settings("first_stage", recipe).filters
        and recipe["negatives"]["source"] != "bm25"
    ):
        raise ValueError(
            f"{where}: negatives.first_stage.filter needs negatives.source: bm25 (it uses BM25's scores)"
        )
    if mine["bm25_fraction"] > 0 and mine["n"] <= 0:
        raise ValueError(
            f"{where}: negatives.mine.bm25_fraction > 0 needs negatives.mine.n > 0"
        )


for _name, _recipe in VARIANTS.items():
    check_mining(_recipe, f"sweep: variant '{_name}'" if SWEEP else "config")
