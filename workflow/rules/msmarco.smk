# MS MARCO passage ranking as the seed toolkits prepare it: raw files (downloaded once, outside results/),
# the title join, negatives from the training triples, Parquet tables, and runs in the MS MARCO format.


rule msmarco_fetch:
    output:
        f"{config['download_dir']}/{{dataset}}/{{name}}",
    log:
        log_path("msmarco_fetch", "{dataset}.{name}"),
    wildcard_constraints:
        dataset=f"{MSMARCO_DATASETS}|{TEVATRON_DATASETS}",  # a tevatron dataset's qrels may be one
        name="|".join(re.escape(n) for n in MSMARCO_RAW_FILES),
    conda:
        CPU_ENV
    threads: res("msmarco_fetch", "threads")
    resources:
        **rule_resources("msmarco_fetch"),
    params:
        archives=lambda w, output: f"{os.path.dirname(output[0])}/archives",
    shell:
        "python -m dr_core fetch-msmarco --name {wildcards.name} --out {output:q} "
        "--archive-dir {params.archives:q} > {log:q} 2>&1"


rule msmarco_join:
    input:
        para=msmarco_file("para.txt"),
        titles=msmarco_file("para.title.txt"),
    output:
        out(layout.corpus_tsv()),
    log:
        log_path("msmarco", "{dataset}.join"),
    wildcard_constraints:
        dataset=MSMARCO_DATASETS,
    conda:
        CPU_ENV
    threads: res("msmarco_join", "threads")
    resources:
        **rule_resources("msmarco_join"),
    params:
        code=step_fingerprint("msmarco"),
    shell:
        "python -m dr_core msmarco join --para {input.para:q} --titles {input.titles:q} "
        "--out {output:q} > {log:q} 2>&1"


rule msmarco_corpus:
    input:
        out(layout.corpus_tsv()),
    output:
        out(layout.corpus()),
    log:
        log_path("msmarco", "{dataset}.corpus"),
    wildcard_constraints:
        dataset=MSMARCO_DATASETS,
    conda:
        CPU_ENV
    threads: res("msmarco_corpus", "threads")
    resources:
        **rule_resources("msmarco_corpus"),
    params:
        code=step_fingerprint("msmarco"),
    shell:
        "python -m dr_core msmarco corpus --corpus-tsv {input:q} --out {output:q} > {log:q} 2>&1"


rule msmarco_queries:
    input:
        train=msmarco_file("train.query.txt"),
        dev=msmarco_file("queries.dev.small.tsv"),
    output:
        out(layout.queries()),
    log:
        log_path("msmarco", "{dataset}.queries"),
    wildcard_constraints:
        dataset=MSMARCO_DATASETS,
    conda:
        CPU_ENV
    threads: res("msmarco_queries", "threads")
    resources:
        **rule_resources("msmarco_queries"),
    params:
        code=step_fingerprint("msmarco"),
    shell:
        "python -m dr_core msmarco queries --query-files {input.train:q} {input.dev:q} "
        "--out {output:q} > {log:q} 2>&1"


rule msmarco_qrels:
    input:
        qrels=lambda w: msmarco_file(MSMARCO_QRELS[w.split])(w),
        corpus=out(layout.corpus()),
        queries=out(layout.queries()),
    output:
        out(layout.qrels()),
    log:
        log_path("msmarco", "{dataset}.qrels.{split}"),
    wildcard_constraints:
        dataset=MSMARCO_DATASETS,
        split="train|dev",
    conda:
        CPU_ENV
    threads: res("msmarco_qrels", "threads")
    resources:
        **rule_resources("msmarco_qrels"),
    params:
        code=step_fingerprint("msmarco"),
    shell:
        "python -m dr_core msmarco qrels --qrels {input.qrels:q} --corpus {input.corpus:q} "
        "--queries {input.queries:q} --out {output:q} > {log:q} 2>&1"


rule msmarco_triples:
    input:
        msmarco_file("qidpidtriples.train.full.2.tsv.gz"),
    output:
        out(layout.triples_negatives()),
    log:
        log_path("msmarco", "{dataset}.triples"),
    wildcard_constraints:
        dataset=MSMARCO_DATASETS,
    conda:
        CPU_ENV
    threads: res("msmarco_triples", "threads")
    resources:
        **rule_resources("msmarco_triples"),
    params:
        code=step_fingerprint("msmarco"),
    shell:
        "python -m dr_core msmarco triples --triples {input:q} --out {output:q} > {log:q} 2>&1"


rule msmarco_run:
    input:
        out(layout.run()),
    output:
        out(layout.msmarco_run()),
    log:
        log_path("msmarco", "{system}.{dataset}.{split}.run"),
    wildcard_constraints:
        dataset=MSMARCO_DATASETS,
    conda:
        CPU_ENV
    threads: res("msmarco_run", "threads")
    resources:
        **rule_resources("msmarco_run"),
    params:
        code=step_fingerprint("msmarco"),
    shell:
        "python -m dr_core msmarco run --run {input:q} --out {output:q} > {log:q} 2>&1"
