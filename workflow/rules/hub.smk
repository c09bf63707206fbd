# Model cards with each round's metrics (after evaluation), and the opt-in upload of one round to the Hugging
# Face Hub. The card is a separate file: the model folder is a finished directory() output, and writing into it
# would make it newer than what was built from it (encode, index, ...), which Snakemake would then rerun.


rule model_card:
    input:
        model=out(layout.round_model()),
        metrics=round_metric_files,
    output:
        out(layout.model_card()),
    log:
        log_path("model_card", "round{round}"),
    conda:
        CPU_ENV
    threads: res("model_card", "threads")
    resources:
        **rule_resources("model_card"),
    params:
        command=lambda w: reproduce_command(w.round),
        code=step_fingerprint("model-card"),
    shell:
        "python -m dr_core model-card --model {input.model:q} --metrics {input.metrics:q} "
        "--command {params.command:q} --out {output:q} > {log:q} 2>&1"


if HUB["repo_id"]:
    if HUB_ROUND > ROUNDS:
        raise ValueError(
            f"config: hub.round {HUB_ROUND} is past the last round (ance.rounds {ROUNDS})"
        )

    rule push_to_hub:
        input:
            model=out(layout.round_model(HUB_ROUND)),
            card=out(layout.model_card(HUB_ROUND)),
        output:
            out(layout.hub_push(HUB_ROUND)),
        log:
            log_path("push_to_hub", f"round{HUB_ROUND}"),
        conda:
            CPU_ENV
        threads: res("push_to_hub", "threads")
        resources:
            **rule_resources("push_to_hub"),
        params:
            repo_id=HUB["repo_id"],
            private="--private" if HUB["private"] else "",
            token_env=HUB["token_env"],
        shell:
            "python -m dr_core push-to-hub --model {input.model:q} --card {input.card:q} "
            "--repo-id {params.repo_id:q} {params.private} --token-env {params.token_env:q} "
            "--out {output:q} > {log:q} 2>&1"
