# Round 1 trains on BM25 negatives (or a given file, or MS MARCO's triples); round r >= 2 on negatives mined
# with round r-1's model (or its hybrid with BM25, or with a share from BM25: fusion_inputs.smk).
MINE_ARGS = (
    "python -m dr_core mine --run {input.run:q} --qrels {input.qrels:q} --out {output:q} "
    "--rank-min {params.rank_min} --rank-max {params.rank_max} --n {params.n} --seed {params.seed}"
)
MINE_SHELL = f"{MINE_ARGS} > {{log:q}} 2>&1"


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
            code=step_fingerprint("negatives-file"),
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
            code=step_fingerprint("mine"),
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
        code=step_fingerprint("mine"),
    shell:
        f"{MINE_ARGS}{MIX_ARGS} > {{log:q}} 2>&1"
