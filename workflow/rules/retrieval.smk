rule encode:
    input:
        model=out("{vdir}" + layout.model()),
        tokens=out(layout.tokens(name="corpus")),
    output:
        emb=out("{vdir}" + layout.emb_shard()),
        ids=out("{vdir}" + layout.emb_ids()),
    log:
        log_path("encode", "{vdir}{dense}.{dataset}.shard{shard}"),
    benchmark:
        benchmark_path("encode", "{vdir}{dense}.{dataset}.shard{shard}")
    conda:
        GPU_ENV
    threads: res("encode", "threads")
    resources:
        **rule_resources("encode"),
    params:
        num_shards=SHARDS,
        settings=cli_flags(
            {
                "batch_size": config["encode"]["batch_size"],
                "max_len": config["encode"]["p_max_len"],
                "fp16": config["encode"]["fp16"],
                "compile": config["encode"]["compile"],
            }
        ),
        code=step_fingerprint("encode"),
    shell:
        "python -m dr_core --threads {threads} encode --model {input.model:q} --tokens {input.tokens:q} "
        "--shard {wildcards.shard} --num-shards {params.num_shards} --emb-out {output.emb:q} "
        "--ids-out {output.ids:q} {params.settings} > {log:q} 2>&1"


# One faiss index per dense model (`dense`: a round, or one merged with the base model, wise-*) and dataset
# (index.factory; `auto` picks Flat, IVF-Flat or IVF-PQ from the corpus size and index.memory_gb), trained on a
# seeded sample, beside index.json (what it was built from). Every retrieve of the model and dataset searches it. A CPU job, in the GPU environment all the same: the index file
# is then written by the faiss release (faiss-gpu) that reads it.
rule index:
    input:
        model=out("{vdir}" + layout.model()),
        shards=lambda w: emb_shards(w.dense, w.dataset, variant(w)),
    output:
        index=out("{vdir}" + layout.index()),
        meta=out("{vdir}" + layout.index_meta()),
    log:
        log_path("index", "{vdir}{dense}.{dataset}"),
    benchmark:
        benchmark_path("index", "{vdir}{dense}.{dataset}")
    conda:
        GPU_ENV
    threads: res("index", "threads")
    resources:
        **rule_resources("index"),
    params:
        settings=cli_flags(
            {
                k: config["index"][k]
                for k in ("factory", "memory_gb", "seed", "train_size")
            }
        ),
        code=step_fingerprint("index"),
    shell:
        "python -m dr_core --threads {threads} index --model {input.model:q} --shards {input.shards:q} "
        "{params.settings} --out {output.index:q} --meta-out {output.meta:q} > {log:q} 2>&1"


rule retrieve:
    input:
        unpack(retrieve_inputs),
        queries=out(layout.tokens(name="queries")),
        qrels=out(layout.qrels()),
    output:
        out("{vdir}" + layout.run("{dense}")),
    log:
        log_path("retrieve", "{vdir}{dense}.{dataset}.{split}"),
    benchmark:
        benchmark_path("retrieve", "{vdir}{dense}.{dataset}.{split}")
    conda:
        GPU_ENV
    threads: res("retrieve", "threads")
    resources:
        **rule_resources("retrieve"),
    params:
        depth=lambda w: (
            vconfig(w)["negatives"]["mine"]["depth"]
            if is_train_target(w)
            else config["eval"]["depth"]
        ),
        max_len=config["encode"]["q_max_len"] or 0,
        search=search_args(),
        code=step_fingerprint("retrieve"),
    shell:
        "python -m dr_core --threads {threads} retrieve --model {input.model:q} "
        "--query-tokens {input.queries:q} --qrels {input.qrels:q} --index {input.index:q} "
        "--index-meta {input.meta:q} --ids {input.ids:q} --k {params.depth} --max-len {params.max_len} "
        "{params.search} --tag {wildcards.dense} --out {output:q} > {log:q} 2>&1"
