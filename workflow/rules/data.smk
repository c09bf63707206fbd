rule acquire:
    output:
        directory(f"{config['download_dir']}/{{dataset}}"),
    log:
        log_path("acquire", "{dataset}"),
    wildcard_constraints:
        dataset=BEIR_DATASETS,
    conda:
        CPU_ENV
    threads: res("acquire", "threads")
    resources:
        **rule_resources("acquire"),
    params:
        url=lambda w: _dataset(w.dataset)["url"],
        md5=lambda w: _dataset(w.dataset)["md5"] or "",
        cache=lambda w, output: os.path.dirname(output[0]),
    shell:
        "python -m dr_core acquire --url {params.url:q} --md5={params.md5:q} "
        "--cache-dir {params.cache:q} --out-dir {output:q} > {log:q} 2>&1"


rule prepare:
    input:
        source_dir,
    output:
        corpus=out(layout.corpus()),
        queries=out(layout.queries()),
    log:
        log_path("prepare", "{dataset}"),
    wildcard_constraints:
        dataset=BEIR_DATASETS,
    conda:
        CPU_ENV
    threads: res("prepare", "threads")
    resources:
        **rule_resources("prepare"),
    params:
        empty_docs=lambda w: _dataset(w.dataset)["empty_docs"],
        code=step_fingerprint("prepare"),
    shell:
        "python -m dr_core prepare --src {input:q} --out-dir $(dirname {output.corpus:q}) "
        "--empty-docs {params.empty_docs} > {log:q} 2>&1"


rule qrels:
    input:
        src=source_dir,
        corpus=rules.prepare.output.corpus,
        queries=rules.prepare.output.queries,
    output:
        out(layout.qrels()),
    log:
        log_path("qrels", "{dataset}.{split}"),
    wildcard_constraints:
        dataset=BEIR_DATASETS,
    conda:
        CPU_ENV
    threads: res("qrels", "threads")
    resources:
        **rule_resources("qrels"),
    params:
        empty_docs=lambda w: _dataset(w.dataset)["empty_docs"],
        source_split=lambda w: TRAIN_SPLIT if carved(w) else w.split,
        carve=carve_args,
        code=step_fingerprint("qrels"),
    shell:
        "python -m dr_core qrels --src {input.src:q} --split {params.source_split} --corpus {input.corpus:q} "
        "--queries {input.queries:q} --out {output:q} --empty-docs {params.empty_docs} {params.carve} > {log:q} 2>&1"


rule tokenize:
    input:
        out(layout.table()),
    output:
        out(layout.tokens()),
    log:
        log_path("tokenize", "{dataset}.{table}"),
    wildcard_constraints:
        table="corpus|queries",
    conda:
        CPU_ENV
    threads: res("tokenize", "threads")
    resources:
        **rule_resources("tokenize"),
    params:
        model=config["model"]["base"],
        max_len=lambda w: token_budget(w.table),
        template=lambda w: config["model"][
            "passage_template" if w.table == "corpus" else "query_template"
        ],
        untitled=lambda w: config["model"]["passage_template_untitled"],
        id_column=lambda w: "id" if w.table == "corpus" else "qid",
        code=step_fingerprint("tokenize"),
    shell:
        "python -m dr_core tokenize --model {params.model:q} --src {input:q} --out {output:q} "
        "--max-len {params.max_len} --template={params.template:q} --untitled-template={params.untitled:q} "
        "--id-column {params.id_column} > {log:q} 2>&1"
