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
        queries=TRAIN_QUERIES,
        corpus=TRAIN_CORPUS,
        qrels=TRAIN_QRELS,
        negatives=out(layout.train_negatives(RERANKER["train_round"])),
    output:
        model=directory(TRAINED_RERANKER),
        log_csv=out(layout.train_log("reranker")),
    log:
        log_path("reranker", "train"),
    benchmark:
        benchmark_path("reranker", "train")
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
        checkpoints=out(layout.checkpoints("reranker")),
        launcher=launcher,
        code=step_fingerprint("train-reranker"),
    shell:
        "{params.launcher} dr_core --threads {threads} train-reranker --base {params.base:q} "
        "--queries {input.queries:q} --corpus {input.corpus:q} --qrels {input.qrels:q} "
        "--negatives {input.negatives:q} --template {params.template:q} {params.settings} "
        "--out {output.model:q} --log {output.log_csv:q} --checkpoint-dir {params.checkpoints:q} > {log:q} 2>&1"


rule rerank:
    input:
        run=out(layout.run()),
        queries=out(layout.queries()),
        corpus=out(layout.corpus()),
        model=trained_reranker,
    output:
        out(layout.run("{system}+rerank")),
    log:
        log_path("rerank", "{system}+rerank.{dataset}.{split}"),
    benchmark:
        benchmark_path("rerank", "{system}+rerank.{dataset}.{split}")
    wildcard_constraints:
        system=r"bm25|(bm25\+)?round\d+",
    conda:
        GPU_ENV
    threads: res("rerank", "threads")
    resources:
        **rule_resources("rerank"),
    params:
        model=RERANKER["model"] or TRAINED_RERANKER,
        depth=RERANKER["depth"],
        settings=lambda w: cli_flags(
            {
                "template": config["model"]["template"],
                "batch_size": RERANKER["score_batch_size"],
                "max_len": RERANKER["max_len"],
            }
        ),
        code=step_fingerprint("rerank"),
    shell:
        "python -m dr_core --threads {threads} rerank --model {params.model:q} --run {input.run:q} "
        "--queries {input.queries:q} --corpus {input.corpus:q} --depth {params.depth} {params.settings} "
        "--tag {wildcards.system}+rerank --out {output:q} > {log:q} 2>&1"
