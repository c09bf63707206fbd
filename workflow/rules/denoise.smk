# False negatives out of a round's negatives (negatives.denoise): the teacher's scores of the round's
# candidates decide which mined negatives are likely relevant and are dropped before training.


rule denoise:
    input:
        negatives=out(layout.train_negatives()),
        teacher=teacher_scores,
        qrels=TRAIN_QRELS,
    output:
        out(layout.train_negatives(denoised=True)),
    log:
        log_path("denoise", "round{round}"),
    conda:
        CPU_ENV
    threads: res("denoise", "threads")
    resources:
        **rule_resources("denoise"),
    params:
        settings=cli_flags(config["negatives"]["denoise"]),
        code=step_fingerprint("denoise"),
    shell:
        "python -m dr_core denoise --negatives {input.negatives:q} --teacher-scores {input.teacher:q} "
        "--qrels {input.qrels:q} --out {output:q} {params.settings} > {log:q} 2>&1"
