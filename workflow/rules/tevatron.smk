# Tevatron-format datasets (kind tevatron): the corpus and each split's query groups read through Hugging Face
# `datasets`, from a Hub dataset (kept under <download_dir>/huggingface) or a data file, into the same Parquet
# tables as the other kinds, and the split's negative_passages as round-1 negatives (negatives.source tevatron).


rule tevatron_corpus:
    input:
        tevatron_file(groups=False),
    output:
        out(layout.corpus()),
    log:
        log_path("tevatron", "{dataset}.corpus"),
    wildcard_constraints:
        dataset=TEVATRON_DATASETS,
    conda:
        CPU_ENV
    threads: res("tevatron_corpus", "threads")
    resources:
        **rule_resources("tevatron_corpus"),
    params:
        src=lambda w: tevatron_source(w.dataset),
        cache=TEVATRON_CACHE,
        code=step_fingerprint("tevatron"),
    shell:
        "python -m dr_core tevatron corpus --src {params.src:q} --cache-dir {params.cache:q} --out {output:q} "
        "> {log:q} 2>&1"


rule tevatron_groups:
    input:
        src=tevatron_file(groups=True),
        corpus=out(layout.corpus()),
        judgements=tevatron_judgements,
    output:
        qrels=out(layout.qrels()),
        queries=out(layout.tevatron_queries()),
        negatives=out(layout.tevatron_negatives()),
    log:
        log_path("tevatron", "{dataset}.groups.{split}"),
    wildcard_constraints:
        dataset=TEVATRON_DATASETS,
    conda:
        CPU_ENV
    threads: res("tevatron_groups", "threads")
    resources:
        **rule_resources("tevatron_groups"),
    params:
        src=lambda w: tevatron_source(w.dataset, w.split),
        judged=lambda w, input: (
            f"--judgements {shlex.quote(input.judgements)}" if input.judgements else ""
        ),
        cache=TEVATRON_CACHE,
        code=step_fingerprint("tevatron"),
    shell:
        "python -m dr_core tevatron groups --src {params.src:q} --cache-dir {params.cache:q} "
        "--corpus {input.corpus:q} --out {output.qrels:q} --queries-out {output.queries:q} "
        "--negatives-out {output.negatives:q} {params.judged} > {log:q} 2>&1"


rule tevatron_queries:
    input:
        lambda w: [
            out(layout.tevatron_queries(w.dataset, split))
            for split in _dataset(w.dataset).get("groups", {})
        ],
    output:
        out(layout.queries()),
    log:
        log_path("tevatron", "{dataset}.queries"),
    wildcard_constraints:
        dataset=TEVATRON_DATASETS,
    conda:
        CPU_ENV
    threads: res("tevatron_queries", "threads")
    resources:
        **rule_resources("tevatron_queries"),
    params:
        code=step_fingerprint("tevatron"),
    shell:
        "python -m dr_core tevatron queries --query-files {input:q} --out {output:q} > {log:q} 2>&1"
