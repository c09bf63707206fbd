# The cross-encoder reranker (reranker.*): trained on round `reranker.train_round`'s groups unless
# `reranker.model` names one; `<system>+rerank` re-scores the top `reranker.depth` of a system's run.
RERANKER = config["reranker"]
# Keys of the reranker section that are not training settings (changing them does not retrain it).
RERANKER_WORKFLOW_KEYS = {
    "systems",
    "model",
    "base",
    "train_round",
    "depth",
    "score_batch_size",
}


rule train_reranker:
    input:
        queries=f"{OUT}/data/{TRAIN_DS}/queries.parquet",
        corpus=f"{OUT}/data/{TRAIN_DS}/corpus.parquet",
        qrels=f"{OUT}/data/{TRAIN_DS}/qrels.{TRAIN_SPLIT}.parquet",
        negatives=f"{OUT}/round{RERANKER['train_round']}/train_negatives.tsv",
    output:
        model=directory(f"{OUT}/reranker/model"),
        log_csv=f"{OUT}/reranker/train_log.csv",
    log:
        f"{OUT}/logs/reranker/train.log",
    benchmark:
        f"{OUT}/benchmarks/reranker/train.tsv"
    conda:
        GPU_ENV
    threads: res("train_reranker", "threads")
    resources:
        **rule_resources("train_reranker"),
    params:
        base=RERANKER["base"] or config["model"]["base"],
        template=lambda w: config["model"]["template"],
        settings=cli_flags(
            {k: v for k, v in RERANKER.items() if k not in RERANKER_WORKFLOW_KEYS}
        ),
        checkpoints=f"{OUT}/reranker/checkpoints",
        launcher=launcher,
        code=step_fingerprint("train-reranker"),
    shell:
        "{params.launcher} dr_core --threads {threads} train-reranker --base {params.base:q} "
        "--queries {input.queries:q} --corpus {input.corpus:q} --qrels {input.qrels:q} "
        "--negatives {input.negatives:q} --template {params.template:q} {params.settings} "
        "--out {output.model:q} --log {output.log_csv:q} --checkpoint-dir {params.checkpoints:q} > {log:q} 2>&1"


rule rerank:
    input:
        run=f"{OUT}/{{system}}/{{dataset}}/run.{{split}}.trec",
        queries=f"{OUT}/data/{{dataset}}/queries.parquet",
        corpus=f"{OUT}/data/{{dataset}}/corpus.parquet",
        model=trained_reranker,
    output:
        f"{OUT}/{{system}}+rerank/{{dataset}}/run.{{split}}.trec",
    log:
        f"{OUT}/logs/rerank/{{system}}+rerank.{{dataset}}.{{split}}.log",
    benchmark:
        f"{OUT}/benchmarks/rerank/{{system}}+rerank.{{dataset}}.{{split}}.tsv"
    wildcard_constraints:
        system=r"bm25|(bm25\+)?round\d+",
    conda:
        GPU_ENV
    threads: res("rerank", "threads")
    resources:
        **rule_resources("rerank"),
    params:
        model=RERANKER["model"] or f"{OUT}/reranker/model",
        template=lambda w: config["model"]["template"],
        depth=RERANKER["depth"],
        max_len=RERANKER["max_len"],
        batch_size=RERANKER["score_batch_size"],
        code=step_fingerprint("rerank"),
    shell:
        "python -m dr_core --threads {threads} rerank --model {params.model:q} --run {input.run:q} "
        "--queries {input.queries:q} --corpus {input.corpus:q} --template {params.template:q} "
        "--depth {params.depth} --max-len {params.max_len} --batch-size {params.batch_size} "
        "--tag {wildcards.system}+rerank --out {output:q} > {log:q} 2>&1"
