rule bm25:
    input:
        corpus=f"{OUT}/data/{{dataset}}/corpus.parquet",
        queries=f"{OUT}/data/{{dataset}}/queries.parquet",
        qrels=f"{OUT}/data/{{dataset}}/qrels.{{split}}.parquet",
    output:
        f"{OUT}/bm25/{{dataset}}/run.{{split}}.trec",
    log:
        f"{OUT}/logs/bm25/{{dataset}}.{{split}}.log",
    benchmark:
        f"{OUT}/benchmarks/bm25/{{dataset}}.{{split}}.tsv"
    conda:
        CPU_ENV
    threads: res("bm25", "threads")
    resources:
        **rule_resources("bm25"),
    params:
        depth=lambda w: (
            config["negatives"]["first_stage"]["depth"]
            if is_train_target(w)
            else config["eval"]["depth"]
        ),
        settings=cli_flags(config["bm25"]),
        code=step_fingerprint("bm25"),
    shell:
        "python -m dr_core --threads {threads} bm25 --corpus {input.corpus:q} --queries {input.queries:q} "
        "--qrels {input.qrels:q} --out {output:q} --k {params.depth} {params.settings} > {log:q} 2>&1"
