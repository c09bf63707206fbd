# Figures and tables for `snakemake --report`: each output is registered with report() and a caption.


rule report_table:
    input:
        summary=out(layout.summary()),
        beir=out(layout.summary_beir()),
    output:
        report(
            out(layout.report("summary.html")),
            category="Metrics",
            caption="../report/summary.rst",
        ),
    log:
        log_path("report", "summary"),
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
        out(layout.summary()),
    output:
        report(
            out(layout.report("metrics.png")),
            category="Metrics",
            caption="../report/metrics.rst",
        ),
    log:
        log_path("report", "metrics"),
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
            out(layout.report("training_loss.png")),
            category="Training",
            caption="../report/training_loss.rst",
        ),
    log:
        log_path("report", "training_loss"),
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
            out(layout.report("dro_weights.png")),
            category="Training",
            caption="../report/dro_weights.rst",
        ),
    log:
        log_path("report", "dro_weights"),
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
            out(layout.report("runtimes.png")),
            category="Runtimes",
            caption="../report/runtimes.rst",
        ),
    log:
        log_path("report", "runtimes"),
    conda:
        CPU_ENV
    params:
        code=step_fingerprint("dr_core.plots"),
    shell:
        "python -m dr_core.plots runtimes --benchmarks {input:q} --out {output:q} 2> {log:q}"
