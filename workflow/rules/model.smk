# Round 0 is the base model saved as a bi-encoder (the zero-shot baseline); round r >= 1 is trained.


def encoder_spec():
    m = config["model"]
    keys = ("pooling", "similarity", "q_max_len", "p_max_len", "untied", "projection_dim")
    return json.dumps({k: m[k] for k in keys})


def train_init(wildcards):
    r = int(wildcards.round)
    start = r - 1 if config["ance"]["init"] == "previous" else 0
    return f"{OUT}/round{start}/model"


def launcher(wildcards, resources):
    """torchrun for a multi-GPU job, plain python otherwise."""
    if resources.gpu > 1:
        return f"torchrun --standalone --nproc_per_node {resources.gpu}"
    return "python"


rule init_model:
    output:
        directory(f"{OUT}/round0/model"),
    params:
        base=config["model"]["base"],
        spec=encoder_spec(),
        version=VERSION,
    log:
        f"{OUT}/logs/model/round0.log",
    threads: res("init_model", "threads")
    resources:
        **rule_resources("init_model"),
    shell:
        "python -m dr_core init-model --base {params.base:q} --spec {params.spec:q} --out {output:q} > {log:q} 2>&1"


rule train:
    input:
        init=train_init,
        queries=f"{OUT}/data/{TRAIN_DS}/tokens.queries.parquet",
        corpus=f"{OUT}/data/{TRAIN_DS}/tokens.corpus.parquet",
        qrels=f"{OUT}/data/{TRAIN_DS}/qrels.{TRAIN_SPLIT}.parquet",
        negatives=f"{OUT}/round{{round}}/train_negatives.tsv",
    output:
        model=directory(f"{OUT}/round{{round}}/model"),
        log_csv=f"{OUT}/round{{round}}/train_log.csv",
    wildcard_constraints:
        round=r"[1-9]\d*",
    params:
        settings=json.dumps(config["train"]),
        checkpoints=lambda w: f"{OUT}/round{w.round}/checkpoints",
        launcher=launcher,
        version=VERSION,
    log:
        f"{OUT}/logs/train/round{{round}}.log",
    benchmark:
        f"{OUT}/benchmarks/train/round{{round}}.tsv"
    threads: res("train", "threads")
    resources:
        **rule_resources("train"),
    shell:
        "{params.launcher} -m dr_core --threads {threads} train --init {input.init:q} "
        "--queries {input.queries:q} --corpus {input.corpus:q} --qrels {input.qrels:q} "
        "--negatives {input.negatives:q} --out {output.model:q} --log {output.log_csv:q} "
        "--checkpoint-dir {params.checkpoints:q} --settings {params.settings:q} > {log:q} 2>&1"
