# Round 0 is the base model saved as a bi-encoder (the zero-shot baseline); round r >= 1 is trained.
# With model.scale_t5_weights, round 0 is made from the base T5 scaled as OpenMatch does (rule scale_t5).
SCALED_T5 = out(layout.scaled_t5())
SCALE_T5 = config["model"]["scale_t5_weights"]


rule scale_t5:
    output:
        directory(SCALED_T5),
    log:
        log_path("model", "scale_t5"),
    conda:
        CPU_ENV
    threads: res("scale_t5", "threads")
    resources:
        **rule_resources("scale_t5"),
    params:
        base=config["model"]["base"],
        code=step_fingerprint("scale-t5"),
    shell:
        "python -m dr_core scale-t5 --base {params.base:q} --out {output:q} > {log:q} 2>&1"


rule init_model:
    input:
        [SCALED_T5] if SCALE_T5 else [],
    output:
        directory(out(layout.round_model(0))),
    log:
        log_path("model", "round0"),
    conda:
        CPU_ENV
    threads: res("init_model", "threads")
    resources:
        **rule_resources("init_model"),
    params:
        base=SCALED_T5 if SCALE_T5 else config["model"]["base"],
        spec=lambda w: cli_flags(encoder_spec()),  # templates hold braces: not a wildcard pattern
        card=lambda w: model_card(0),
        code=step_fingerprint("init-model"),
    shell:
        "python -m dr_core init-model --base {params.base:q} {params.spec} --card {params.card:q} "
        "--out {output:q} > {log:q} 2>&1"


rule train:
    input:
        init=train_init,
        queries=TRAIN_QUERY_TOKENS,
        corpus=TRAIN_CORPUS_TOKENS,
        qrels=TRAIN_QRELS,
        negatives=train_negatives,
        teacher=teacher_scores,
        clusters=query_clusters,
    output:
        model=directory(out("{vdir}" + layout.round_model())),
        log_csv=out("{vdir}" + layout.train_log()),
    log:
        log_path("train", "{vdir}round{round}"),
    benchmark:
        benchmark_path("train", "{vdir}round{round}")
    wildcard_constraints:
        round=r"[1-9]\d*",
    conda:
        GPU_ENV
    threads: res("train", "threads")
    resources:
        **rule_resources("train"),
    params:
        settings=lambda w: cli_flags(vconfig(w)["train"]),
        dro=lambda w: (
            cli_flags(vconfig(w)["dro"], "dro")
            if vconfig(w)["dro"]["type"] != "none"
            else ""
        ),
        checkpoints=lambda w: out(
            w.vdir + layout.checkpoints(layout.round_name(w.round))
        ),
        launcher=launcher,
        card=lambda w: model_card(w.round),
        code=step_fingerprint("train"),
    shell:
        "{params.launcher} dr_core --threads {threads} train --init {input.init:q} "
        "--queries {input.queries:q} --corpus {input.corpus:q} --qrels {input.qrels:q} "
        "--negatives {input.negatives:q} --out {output.model:q} --log {output.log_csv:q} "
        "--checkpoint-dir {params.checkpoints:q} {params.settings} {params.dro} "
        "--teacher-scores={input.teacher:q} --clusters={input.clusters:q} "
        "--card {params.card:q} > {log:q} 2>&1"


rule teacher_scores:
    input:
        queries=TRAIN_QUERIES,
        corpus=TRAIN_CORPUS,
        qrels=TRAIN_QRELS,
        negatives=out(layout.train_negatives()),
        reranker=teacher_input,
    output:
        out(layout.teacher_scores()),
    log:
        log_path("teacher_scores", "round{round}"),
    conda:
        GPU_ENV
    threads: res("teacher_scores", "threads")
    resources:
        **rule_resources("teacher_scores"),
    params:
        teacher=teacher_model()["model"],
        key=teacher_model()["key"],
        settings=lambda w: teacher_flags(),
        code=step_fingerprint("teacher-scores"),
    shell:
        "python -m dr_core --threads {threads} teacher-scores --model {params.teacher:q} "
        "--queries {input.queries:q} --corpus {input.corpus:q} --qrels {input.qrels:q} "
        "--negatives {input.negatives:q} --out {output:q} {params.settings} "
        "--model-key {params.key} > {log:q} 2>&1"


rule cluster:
    input:
        model=lambda w: vout(
            variant(w),
            sweeps.model_keys(int(w.round) - 1),
            layout.round_model(int(w.round) - 1),
        ),
        queries=TRAIN_QUERY_TOKENS,
        qrels=TRAIN_QRELS,
    output:
        out("{vdir}" + layout.query_clusters()),
    log:
        log_path("cluster", "{vdir}round{round}"),
    wildcard_constraints:
        round=r"[1-9]\d*",
    conda:
        GPU_ENV
    threads: res("cluster", "threads")
    resources:
        **rule_resources("cluster"),
    params:
        settings=lambda w: cli_flags(
            {
                "num_clusters": vconfig(w)["dro"]["num_clusters"],
                "seed": vconfig(w)["train"]["seed"],
            }
        ),
        code=step_fingerprint("cluster"),
    shell:
        "python -m dr_core --threads {threads} cluster --model {input.model:q} --query-tokens {input.queries:q} "
        "--qrels {input.qrels:q} {params.settings} --out {output:q} > {log:q} 2>&1"
