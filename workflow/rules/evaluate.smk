rule evaluate:
    input:
        run=out("{vdir}" + layout.run()),
        qrels=out(layout.qrels()),
    output:
        out("{vdir}" + layout.metrics()),
    log:
        log_path("evaluate", "{vdir}{system}.{dataset}.{split}"),
    conda:
        CPU_ENV
    threads: res("evaluate", "threads")
    resources:
        **rule_resources("evaluate"),
    params:
        metrics=config["eval"]["metrics"],
        code=step_fingerprint("evaluate"),
    shell:
        "python -m dr_core evaluate --run {input.run:q} --qrels {input.qrels:q} --out {output:q} "
        "--system {wildcards.system} --dataset {wildcards.dataset} --split {wildcards.split} "
        "--metrics {params.metrics} > {log:q} 2>&1"


rule summary:
    input:
        lambda w: eval_metric_files(variant(w)),
    output:
        summary=out("{vdir}" + layout.summary()),
        beir=out("{vdir}" + layout.summary_beir()),
    log:
        log_path("{vdir}summary"),
    conda:
        CPU_ENV
    threads: res("summary", "threads")
    resources:
        **rule_resources("summary"),
    params:
        baselines=config["eval"]["baselines"],
        settings=cli_flags({"alpha": config["eval"]["alpha"]}),
        code=step_fingerprint("summarize"),
    shell:
        "python -m dr_core summarize --metrics {input:q} --out {output.summary:q} "
        "--beir-out {output.beir:q} --baselines {params.baselines:q} {params.settings} 2> {log:q}"
