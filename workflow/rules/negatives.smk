# Round 1 trains on BM25 negatives (or a given file, or MS MARCO's triples); round r >= 2 on negatives mined
# with round r-1's model (or its hybrid with BM25, or with a share from BM25: fusion_inputs.smk).
MINE_ARGS = (
    "python -m dr_core mine --run {input.run:q} --qrels {input.qrels:q} --out {output:q} {params.settings} "
    "{params.inputs} > {log:q} 2>&1"
)


if config["negatives"]["source"] != "bm25":

    rule first_negatives:
        input:
            first_negatives_file(),
        output:
            out("{vdir}" + layout.train_negatives(1)),
        log:
            log_path("negatives", "{vdir}round1"),
        conda:
            CPU_ENV
        threads: res("first_negatives", "threads")
        resources:
            **rule_resources("first_negatives"),
        params:
            code=step_fingerprint("negatives-file"),
        shell:
            "python -m dr_core negatives-file --src {input:q} --out {output:q} > {log:q} 2>&1"

else:

    rule first_negatives:
        input:
            run=out(layout.run("bm25", TRAIN_DS, TRAIN_SPLIT)),
            qrels=TRAIN_QRELS,
            positives=first_stage_positives,
        output:
            out("{vdir}" + layout.train_negatives(1)),
        log:
            log_path("negatives", "{vdir}round1"),
        conda:
            CPU_ENV
        threads: res("first_negatives", "threads")
        resources:
            **rule_resources("first_negatives"),
        params:
            settings=lambda w: cli_flags(mine_settings("first_stage", vconfig(w))),
            inputs=mine_input_options("first_stage"),
            code=step_fingerprint("mine"),
        shell:
            MINE_ARGS


rule mine:
    input:
        unpack(mine_inputs),
    output:
        out("{vdir}" + layout.train_negatives()),
    log:
        log_path("negatives", "{vdir}round{round}"),
    wildcard_constraints:
        round=r"[2-9]|[1-9]\d+",
    conda:
        CPU_ENV
    threads: res("mine", "threads")
    resources:
        **rule_resources("mine"),
    params:
        settings=lambda w: cli_flags(mine_settings("mine", vconfig(w))),
        inputs=mine_input_options("mine"),
        code=step_fingerprint("mine"),
    shell:
        MINE_ARGS


# The false-negative filter's scores of the judged positives under the mining model (negatives.<stage>.filter):
# BM25 for round 1, round r-1's bi-encoder for round r.
rule positive_scores_bm25:
    input:
        corpus=TRAIN_CORPUS,
        queries=TRAIN_QUERIES,
        qrels=TRAIN_QRELS,
    output:
        out(layout.positive_scores(1)),
    log:
        log_path("negatives", "positive_scores.round1"),
    conda:
        CPU_ENV
    threads: res("positive_scores_bm25", "threads")
    resources:
        **rule_resources("positive_scores_bm25"),
    params:
        settings=cli_flags(config["bm25"]),
        code=step_fingerprint("positive-scores-bm25"),
    shell:
        "python -m dr_core positive-scores-bm25 --corpus {input.corpus:q} --queries {input.queries:q} "
        "--qrels {input.qrels:q} --out {output:q} {params.settings} > {log:q} 2>&1"


rule positive_scores:
    input:
        model=lambda w: vout(
            variant(w),
            sweeps.model_keys(int(w.round) - 1),
            layout.round_model(int(w.round) - 1),
        ),
        queries=TRAIN_QUERY_TOKENS,
        qrels=TRAIN_QRELS,
        shards=lambda w: emb_shards(
            layout.round_name(int(w.round) - 1), TRAIN_DS, variant(w)
        ),
    output:
        out("{vdir}" + layout.positive_scores()),
    log:
        log_path("negatives", "{vdir}positive_scores.round{round}"),
    wildcard_constraints:
        round=r"[2-9]|[1-9]\d+",
    conda:
        GPU_ENV
    threads: res("positive_scores", "threads")
    resources:
        **rule_resources("positive_scores"),
    params:
        max_len=config["encode"]["q_max_len"] or 0,
        code=step_fingerprint("positive-scores"),
    shell:
        "python -m dr_core --threads {threads} positive-scores --model {input.model:q} "
        "--query-tokens {input.queries:q} --qrels {input.qrels:q} --shards {input.shards:q} "
        "--max-len {params.max_len} --out {output:q} > {log:q} 2>&1"
