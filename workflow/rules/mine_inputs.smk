# The mine steps' settings and inputs (negatives.smk): every decision on negatives.first_stage and negatives.mine
# is made here or by dr_core.negatives.MineSettings, which the rules render as flags. Round 1 samples BM25's run;
# round r >= 2 samples round r-1's dense run (or its hybrid with BM25: mine.from), optionally with a share of
# BM25's first-stage window (mine.bm25_fraction) and the false-negative filter (<stage>.filter).
from dr_core.negatives import MineSettings

MINE = config["negatives"]["mine"]


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


def mine_inputs(wildcards):
    """Round r-1's ranking of the train queries (dense, or fused with BM25), qrels, and BM25's run when mixing."""
    prev = f"round{int(wildcards.round) - 1}"
    system = f"bm25+{prev}" if MINE["from"] == "hybrid" else prev
    inputs = {
        "run": out(layout.run(system, TRAIN_DS, TRAIN_SPLIT)),
        "qrels": TRAIN_QRELS,
    }
    settings = mine_settings("mine")
    if settings.filters:
        inputs["positives"] = out(layout.positive_scores(wildcards.round))
    if settings.mixes_bm25:
        inputs["bm25"] = out(layout.run("bm25", TRAIN_DS, TRAIN_SPLIT))
    return inputs


def mine_inputs_shell(stage):
    """The mine step's options naming the inputs its settings need (mine_settings: BM25's run, the positives'
    scores)."""
    settings = mine_settings(stage)
    return (" --bm25-run {input.bm25:q}" if settings.mixes_bm25 else "") + (
        " --positive-scores {input.positives:q}" if settings.filters else ""
    )


def check_mining():
    """Settings the mine step cannot honour, refused by key before any output."""
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


check_mining()
