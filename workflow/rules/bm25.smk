rule bm25:
    input:
        corpus=out(layout.corpus()),
        queries=out(layout.queries()),
        qrels=out(layout.qrels()),
    output:
        out(layout.run("bm25")),
    log:
        log_path("bm25", "{dataset}.{split}"),
    benchmark:
        benchmark_path("bm25", "{dataset}.{split}")
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
