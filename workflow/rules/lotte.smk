# LoTTE (out-of-domain evaluation): the release archive (downloaded once, outside results/), or a local copy in
# LoTTE's own layout or Disentangled Retriever's, validated into the same Parquet tables as BEIR datasets.


rule lotte_fetch:
    output:
        directory(f"{config['download_dir']}/lotte/lotte"),
    log:
        log_path("lotte", "fetch"),
    conda:
        CPU_ENV
    threads: res("lotte_fetch", "threads")
    resources:
        **rule_resources("lotte_fetch"),
    params:
        cache=lambda w, output: os.path.dirname(output[0]),
    shell:
        "python -m dr_core lotte fetch --cache-dir {params.cache:q} --out-dir {output:q} > {log:q} 2>&1"


rule lotte_prepare:
    input:
        lotte_source,
    output:
        corpus=out(layout.corpus()),
        queries=out(layout.queries()),
    log:
        log_path("lotte", "{dataset}.prepare"),
    wildcard_constraints:
        dataset=LOTTE_DATASETS,
    conda:
        CPU_ENV
    threads: res("lotte_prepare", "threads")
    resources:
        **rule_resources("lotte_prepare"),
    params:
        args=lambda w: lotte_args(w.dataset),
        code=step_fingerprint("lotte"),
    shell:
        "python -m dr_core lotte prepare --src {input:q} {params.args} "
        "--out-dir $(dirname {output.corpus:q}) > {log:q} 2>&1"


rule lotte_qrels:
    input:
        src=lotte_source,
        corpus=rules.lotte_prepare.output.corpus,
        queries=rules.lotte_prepare.output.queries,
    output:
        out(layout.qrels()),
    log:
        log_path("lotte", "{dataset}.qrels.{split}"),
    wildcard_constraints:
        dataset=LOTTE_DATASETS,
    conda:
        CPU_ENV
    threads: res("lotte_qrels", "threads")
    resources:
        **rule_resources("lotte_qrels"),
    params:
        args=lambda w: lotte_args(w.dataset, w.split),
        code=step_fingerprint("lotte"),
    shell:
        "python -m dr_core lotte qrels --src {input.src:q} {params.args} --corpus {input.corpus:q} "
        "--queries {input.queries:q} --out {output:q} > {log:q} 2>&1"
