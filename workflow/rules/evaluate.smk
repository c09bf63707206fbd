rule evaluate:
    input:
        run=f"{OUT}/{{system}}/{{dataset}}/run.{{split}}.trec",
        qrels=f"{OUT}/data/{{dataset}}/qrels.{{split}}.parquet",
    output:
        f"{OUT}/{{system}}/{{dataset}}/metrics.{{split}}.json",
    log:
        f"{OUT}/logs/evaluate/{{system}}.{{dataset}}.{{split}}.log",
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
        lambda w: eval_metric_files(),
    output:
        summary=f"{OUT}/summary.tsv",
        beir=f"{OUT}/summary.beir.tsv",
    log:
        f"{OUT}/logs/summary.log",
    conda:
        CPU_ENV
    threads: res("summary", "threads")
    resources:
        **rule_resources("summary"),
    params:
        baselines=config["eval"]["baselines"],
        alpha=config["eval"]["alpha"],
        code=step_fingerprint("summarize"),
    shell:
        "python -m dr_core summarize --metrics {input:q} --out {output.summary:q} "
        "--beir-out {output.beir:q} --baselines {params.baselines:q} --alpha {params.alpha} 2> {log:q}"
