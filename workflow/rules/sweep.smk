# A sweep's comparison (sweep.section of the recipe): each variant's `selected` round, chosen on its dev split, with
# its dev and test figures and the paired t-test against the base variant on test (dr_core.sweep_table).


rule sweep_table:
    input:
        choices=sweep_choices,
        tests=sweep_tests,
    output:
        table=out(layout.sweep_table()),
        html=report(
            out(layout.report("sweep.html")),
            category="Sweep",
            caption="../report/sweep.rst",
        ),
        plot=report(
            out(layout.report("sweep_dev.png")),
            category="Sweep",
            caption="../report/sweep_dev.rst",
        ),
    log:
        log_path("sweep_table"),
    conda:
        CPU_ENV
    threads: res("sweep_table", "threads")
    resources:
        **rule_resources("sweep_table"),
    params:
        variants=list(VARIANTS),
        base=BASE_VARIANT,
        settings=cli_flags({"alpha": config["eval"]["alpha"]}),
        code=step_fingerprint("sweep-table"),
    shell:
        "python -m dr_core sweep-table --variants {params.variants:q} --base {params.base:q} "
        "--choices {input.choices:q} --tests {input.tests:q} {params.settings} --out {output.table:q} "
        "--html {output.html:q} --plot {output.plot:q} 2> {log:q}"
