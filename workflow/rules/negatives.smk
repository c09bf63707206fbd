# Round 1 trains on BM25 negatives (or a given file, or MS MARCO's triples); round r >= 2 on negatives mined
# with round r-1's model.
MINE_ARGS = (
    "python -m dr_core mine --run {input.run:q} --qrels {input.qrels:q} --out {output:q} "
    "--rank-min {params.rank_min} --rank-max {params.rank_max} --n {params.n} --seed {params.seed}"
)
MINE_SHELL = MINE_ARGS + " > {log:q} 2>&1"
MINE = config["negatives"]["mine"]
# Round r >= 2 may mine BM25 fused with round r-1 (mine.from: hybrid) and take a share of its negatives from
# BM25's first-stage window (mine.bm25_fraction).
MIX_ARGS = (
    " --bm25-run {input.bm25:q} --bm25-fraction {params.bm25_fraction} "
    "--bm25-rank-min {params.bm25_rank_min} --bm25-rank-max {params.bm25_rank_max}"
    if MINE["bm25_fraction"] > 0
    else ""
)
if MINE["bm25_fraction"] > 0 and MINE["n"] <= 0:
    raise ValueError(
        "config: negatives.mine.bm25_fraction > 0 needs negatives.mine.n > 0 (a number of negatives to share)"
    )


def mine_inputs(wildcards):
    """Round r-1's ranking of the train queries (dense, or fused with BM25), qrels, and BM25's run when mixing."""
    prev = f"round{int(wildcards.round) - 1}"
    system = f"bm25+{prev}" if MINE["from"] == "hybrid" else prev
    inputs = {
        "run": f"{OUT}/{system}/{TRAIN_DS}/run.{TRAIN_SPLIT}.trec",
        "qrels": f"{OUT}/data/{TRAIN_DS}/qrels.{TRAIN_SPLIT}.parquet",
    }
    if MINE["bm25_fraction"] > 0:
        inputs["bm25"] = f"{OUT}/bm25/{TRAIN_DS}/run.{TRAIN_SPLIT}.trec"
    return inputs


def mix_params():
    """The BM25 share and window of round r >= 2's negatives; none when not mixing (stable rerun params)."""
    if MINE["bm25_fraction"] <= 0:
        return {}
    first = config["negatives"]["first_stage"]
    return {
        "bm25_fraction": MINE["bm25_fraction"],
        "bm25_rank_min": first["rank_min"],
        "bm25_rank_max": first["rank_max"],
    }


if config["negatives"]["source"] != "bm25":

    rule first_negatives:
        input:
            first_negatives_file(),
        output:
            f"{OUT}/round1/train_negatives.tsv",
        log:
            f"{OUT}/logs/negatives/round1.log",
        conda:
            CPU_ENV
        threads: res("first_negatives", "threads")
        resources:
            **rule_resources("first_negatives"),
        params:
            version=VERSION,
        shell:
            "python -m dr_core negatives-file --src {input:q} --out {output:q} > {log:q} 2>&1"

else:

    rule first_negatives:
        input:
            run=f"{OUT}/bm25/{TRAIN_DS}/run.{TRAIN_SPLIT}.trec",
            qrels=f"{OUT}/data/{TRAIN_DS}/qrels.{TRAIN_SPLIT}.parquet",
        output:
            f"{OUT}/round1/train_negatives.tsv",
        log:
            f"{OUT}/logs/negatives/round1.log",
        conda:
            CPU_ENV
        threads: res("first_negatives", "threads")
        resources:
            **rule_resources("first_negatives"),
        params:
            **window_params("first_stage"),
            seed=config["negatives"]["seed"],
            version=VERSION,
        shell:
            MINE_SHELL


rule mine:
    input:
        unpack(mine_inputs),
    output:
        f"{OUT}/round{{round}}/train_negatives.tsv",
    log:
        f"{OUT}/logs/negatives/round{{round}}.log",
    wildcard_constraints:
        round=r"[2-9]|[1-9]\d+",
    conda:
        CPU_ENV
    threads: res("mine", "threads")
    resources:
        **rule_resources("mine"),
    params:
        **window_params("mine"),
        **mix_params(),
        seed=config["negatives"]["seed"],
        version=VERSION,
    shell:
        MINE_ARGS + MIX_ARGS + " > {log:q} 2>&1"
