rule encode:
    input:
        model=f"{OUT}/round{{round}}/model",
        tokens=f"{OUT}/data/{{dataset}}/tokens.corpus.parquet",
    output:
        emb=f"{OUT}/round{{round}}/{{dataset}}/emb/shard{{shard}}.npy",
        ids=f"{OUT}/round{{round}}/{{dataset}}/emb/shard{{shard}}.ids.txt",
    log:
        f"{OUT}/logs/encode/round{{round}}.{{dataset}}.shard{{shard}}.log",
    benchmark:
        f"{OUT}/benchmarks/encode/round{{round}}.{{dataset}}.shard{{shard}}.tsv"
    conda:
        GPU_ENV
    threads: res("encode", "threads")
    resources:
        **rule_resources("encode"),
    params:
        num_shards=SHARDS,
        batch_size=config["encode"]["batch_size"],
        max_len=config["encode"]["p_max_len"] or 0,
        version=VERSION,
    shell:
        "python -m dr_core --threads {threads} encode --model {input.model:q} --tokens {input.tokens:q} "
        "--shard {wildcards.shard} --num-shards {params.num_shards} --emb-out {output.emb:q} "
        "--ids-out {output.ids:q} --batch-size {params.batch_size} --max-len {params.max_len} > {log:q} 2>&1"


rule retrieve:
    input:
        model=f"{OUT}/round{{round}}/model",
        queries=f"{OUT}/data/{{dataset}}/tokens.queries.parquet",
        qrels=f"{OUT}/data/{{dataset}}/qrels.{{split}}.parquet",
        shards=lambda w: [
            f"{OUT}/round{w.round}/{w.dataset}/emb/shard{s}.{ext}"
            for s in range(SHARDS)
            for ext in ("npy", "ids.txt")
        ],
    output:
        f"{OUT}/round{{round}}/{{dataset}}/run.{{split}}.trec",
    log:
        f"{OUT}/logs/retrieve/round{{round}}.{{dataset}}.{{split}}.log",
    benchmark:
        f"{OUT}/benchmarks/retrieve/round{{round}}.{{dataset}}.{{split}}.tsv"
    conda:
        GPU_ENV
    threads: res("retrieve", "threads")
    resources:
        **rule_resources("retrieve"),
    params:
        depth=lambda w: (
            config["negatives"]["mine"]["depth"]
            if is_train_target(w)
            else config["eval"]["depth"]
        ),
        max_len=config["encode"]["q_max_len"] or 0,
        version=VERSION,
    shell:
        "python -m dr_core --threads {threads} retrieve --model {input.model:q} "
        "--query-tokens {input.queries:q} --qrels {input.qrels:q} --shards {input.shards:q} "
        "--k {params.depth} --max-len {params.max_len} --tag round{wildcards.round} --out {output:q} > {log:q} 2>&1"
