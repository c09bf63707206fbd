# MS MARCO passage ranking as the seed toolkits prepare it: raw files (downloaded once, outside results/),
# the title join, negatives from the training triples, Parquet tables, and runs in the MS MARCO format.


rule msmarco_fetch:
    output:
        f"{config['download_dir']}/{{dataset}}/{{name}}",
    log:
        f"{OUT}/logs/msmarco_fetch/{{dataset}}.{{name}}.log",
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
        f"{OUT}/data/{{dataset}}/corpus.tsv",
    log:
        f"{OUT}/logs/msmarco/{{dataset}}.join.log",
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
        f"{OUT}/data/{{dataset}}/corpus.tsv",
    output:
        f"{OUT}/data/{{dataset}}/corpus.parquet",
    log:
        f"{OUT}/logs/msmarco/{{dataset}}.corpus.log",
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
        f"{OUT}/data/{{dataset}}/queries.parquet",
    log:
        f"{OUT}/logs/msmarco/{{dataset}}.queries.log",
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
        corpus=f"{OUT}/data/{{dataset}}/corpus.parquet",
        queries=f"{OUT}/data/{{dataset}}/queries.parquet",
    output:
        f"{OUT}/data/{{dataset}}/qrels.{{split}}.parquet",
    log:
        f"{OUT}/logs/msmarco/{{dataset}}.qrels.{{split}}.log",
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
        f"{OUT}/data/{{dataset}}/triples.negatives.tsv",
    log:
        f"{OUT}/logs/msmarco/{{dataset}}.triples.log",
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
        f"{OUT}/{{system}}/{{dataset}}/run.{{split}}.trec",
    output:
        f"{OUT}/{{system}}/{{dataset}}/run.{{split}}.msmarco.tsv",
    log:
        f"{OUT}/logs/msmarco/{{system}}.{{dataset}}.{{split}}.run.log",
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
