# Choices on dev (data.dev): whether to train another round (ance.rounds {max, patience, min_delta}: a decision
# file per round, a checkpoint, so the DAG is re-evaluated after it), the system `selected` (the round with the
# best dev figure; its runs are that round's, retagged) and the merged models wise-* (merge).


checkpoint round_decision:
    input:
        lambda w: [dev_metrics(r, variant(w)) for r in range(int(w.round) + 1)],
    output:
        out("{vdir}" + layout.decision()),
    log:
        log_path("select", "{vdir}decision{round}"),
    conda:
        CPU_ENV
    threads: res("round_decision", "threads")
    resources:
        **rule_resources("round_decision"),
    params:
        metric=SELECT_METRIC,
        rule=lambda w: (
            f"--max-rounds {STOPPING['max']} --patience {STOPPING['patience']} "
            f"--min-delta {STOPPING['min_delta']}"
        ),
        code=step_fingerprint("round-decision"),
    shell:
        "python -m dr_core round-decision --metrics {input:q} --metric {params.metric} {params.rule} "
        "--out {output:q} > {log:q} 2>&1"


checkpoint select_round:
    input:
        lambda w: [dev_metrics(r, variant(w)) for r in trained_rounds(variant(w))],
    output:
        out("{vdir}" + layout.choice()),
    log:
        log_path("select", "{vdir}choice"),
    conda:
        CPU_ENV
    threads: res("select_round", "threads")
    resources:
        **rule_resources("select_round"),
    params:
        metric=SELECT_METRIC,
        code=step_fingerprint("select-round"),
    shell:
        "python -m dr_core select-round --metrics {input:q} --metric {params.metric} --out {output:q} > {log:q} 2>&1"


rule selected_run:
    input:
        choice=out("{vdir}" + layout.choice()),
        run=lambda w: selected_round_run(w),
    output:
        out("{vdir}" + layout.run("selected")),
    log:
        log_path("select", "{vdir}{dataset}.{split}"),
    conda:
        CPU_ENV
    threads: res("selected_run", "threads")
    resources:
        **rule_resources("selected_run"),
    params:
        code=step_fingerprint("select-run"),
    shell:
        "python -m dr_core select-run --run {input.run:q} --tag selected --out {output:q} > {log:q} 2>&1"


rule merge_model:
    input:
        base=out(layout.round_model(0)),
        tuned=merged_round,
    output:
        directory(out("{vdir}" + layout.model("wise-{which}"))),
    log:
        log_path("merge", "{vdir}wise-{which}"),
    wildcard_constraints:
        which=r"round\d+|selected",
    conda:
        CPU_ENV
    threads: res("merge_model", "threads")
    resources:
        **rule_resources("merge_model"),
    params:
        alpha=config["merge"]["alpha"],
        code=step_fingerprint("merge-models"),
    shell:
        "python -m dr_core merge-models --base {input.base:q} --tuned {input.tuned:q} --alpha {params.alpha} "
        "--out {output:q} > {log:q} 2>&1"
