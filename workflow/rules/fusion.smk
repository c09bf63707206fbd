# Hybrid systems `bm25+<ranker>`, the ranker a round, `selected` or a merged model (settings and input functions
# in fusion_inputs.smk).


rule fuse:
    input:
        unpack(fuse_inputs),
    output:
        out("{vdir}" + layout.run("bm25+{ranker}")),
    log:
        log_path("fuse", "{vdir}bm25+{ranker}.{dataset}.{split}"),
    conda:
        CPU_ENV
    threads: res("fuse", "threads")
    resources:
        **rule_resources("fuse"),
    params:
        settings=cli_flags(
            {k: HYBRID[k] for k in ("method", "weight", "rrf_k", "depth")}
        ),
        code=step_fingerprint("fuse"),
    shell:
        "python -m dr_core fuse --bm25 {input.bm25:q} --dense {input.dense:q} {params.settings} "
        f"{WEIGHT_ARG} "
        "--tag bm25+{wildcards.ranker} --out {output:q} > {log:q} 2>&1"


rule fusion_weight:
    input:
        bm25=out(layout.run("bm25", TRAIN_DS, TUNE_SPLIT)),
        dense=tune_run,
        qrels=out(layout.qrels(TRAIN_DS, TUNE_SPLIT)),
    output:
        out("{vdir}" + layout.fusion_weight()),
    log:
        log_path("fuse", "{vdir}bm25+{ranker}.weight"),
    conda:
        CPU_ENV
    threads: res("fusion_weight", "threads")
    resources:
        **rule_resources("fusion_weight"),
    params:
        depth=HYBRID["depth"],
        code=step_fingerprint("fusion-weight"),
    shell:
        "python -m dr_core fusion-weight --bm25 {input.bm25:q} --dense {input.dense:q} --qrels {input.qrels:q} "
        "--depth {params.depth} --out {output:q} > {log:q} 2>&1"
