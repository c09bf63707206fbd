# Figures and tables for `snakemake --report`: each output is registered with report() and a caption.


include: "report_inputs.smk"


rule report_table:
    input:
        summary=rules.summary.output.summary,
        beir=rules.summary.output.beir,
    output:
        report(
            f"{REPORT}/summary.html",
            category="Metrics",
            caption="../report/summary.rst",
        ),
    log:
        f"{OUT}/logs/report/summary.log",
    conda:
        CPU_ENV
    params:
        alpha=config["eval"]["alpha"],
        code=step_fingerprint("dr_core.plots"),
    shell:
        "python -m dr_core.plots table --summary {input.summary:q} --beir {input.beir:q} --out {output:q} "
        "--alpha {params.alpha} 2> {log:q}"


rule report_metrics:
    input:
        rules.summary.output.summary,
    output:
        report(
            f"{REPORT}/metrics.png",
            category="Metrics",
            caption="../report/metrics.rst",
        ),
    log:
        f"{OUT}/logs/report/metrics.log",
    conda:
        CPU_ENV
    params:
        code=step_fingerprint("dr_core.plots"),
    shell:
        "python -m dr_core.plots metrics --summary {input:q} --out {output:q} 2> {log:q}"


rule report_training:
    input:
        lambda w: train_logs(),
    output:
        report(
            f"{REPORT}/training_loss.png",
            category="Training",
            caption="../report/training_loss.rst",
        ),
    log:
        f"{OUT}/logs/report/training_loss.log",
    conda:
        CPU_ENV
    params:
        code=step_fingerprint("dr_core.plots"),
    shell:
        "python -m dr_core.plots training --logs {input:q} --out {output:q} 2> {log:q}"


rule report_dro:
    input:
        lambda w: train_logs(),
    output:
        report(
            f"{REPORT}/dro_weights.png",
            category="Training",
            caption="../report/dro_weights.rst",
        ),
    log:
        f"{OUT}/logs/report/dro_weights.log",
    conda:
        CPU_ENV
    params:
        code=step_fingerprint("dr_core.plots"),
    shell:
        "python -m dr_core.plots dro --logs {input:q} --out {output:q} 2> {log:q}"


rule report_runtimes:
    input:
        lambda w: benchmark_files(),
    output:
        report(
            f"{REPORT}/runtimes.png",
            category="Runtimes",
            caption="../report/runtimes.rst",
        ),
    log:
        f"{OUT}/logs/report/runtimes.log",
    conda:
        CPU_ENV
    params:
        code=step_fingerprint("dr_core.plots"),
    shell:
        "python -m dr_core.plots runtimes --benchmarks {input:q} --out {output:q} 2> {log:q}"
