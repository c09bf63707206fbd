# Dense-retrieval training loop (BM25 negatives -> train -> encode -> retrieve -> mine -> train ...) as one DAG.
import gc

from snakemake.utils import min_version

min_version("9.0")


configfile: f"{workflow.basedir}/config/config.yaml"


report: "workflow/report/workflow.rst"


# Helpers first, each after what it uses (config, then paths, then the input functions), then the rules.
include: "workflow/rules/config.smk"
include: "workflow/rules/paths.smk"
include: "workflow/rules/systems.smk"
include: "workflow/rules/datasets.smk"
include: "workflow/rules/resources.smk"
include: "workflow/rules/flags.smk"
include: "workflow/rules/training_inputs.smk"
include: "workflow/rules/cards.smk"
include: "workflow/rules/mine_inputs.smk"
include: "workflow/rules/fusion_inputs.smk"
include: "workflow/rules/sweep_inputs.smk"
include: "workflow/rules/select_inputs.smk"
include: "workflow/rules/hub_inputs.smk"
include: "workflow/rules/report_inputs.smk"
include: "workflow/rules/targets.smk"
include: "workflow/rules/data.smk"


# A dataset kind's rules only where the recipe defines a dataset of that kind (a Tevatron dataset's qrels may be a
# raw MS MARCO file): their {dataset} wildcard is constrained to those datasets' names, so elsewhere they could make
# no file, and parsing them is ~15 ms of every invocation, a dry run's included.
if KINDS & {"msmarco", "tevatron"}:

    include: "workflow/rules/msmarco.smk"


if "lotte" in KINDS:

    include: "workflow/rules/lotte.smk"


if "tevatron" in KINDS:

    include: "workflow/rules/tevatron_inputs.smk"
    include: "workflow/rules/tevatron.smk"


include: "workflow/rules/bm25.smk"
include: "workflow/rules/negatives.smk"
include: "workflow/rules/denoise.smk"
include: "workflow/rules/model.smk"
include: "workflow/rules/retrieval.smk"
include: "workflow/rules/fusion.smk"
include: "workflow/rules/rerank.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/select.smk"
include: "workflow/rules/hub.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/sweep.smk"


rule all:
    default_target: True
    input:
        lambda w: all_targets(),
        # apart: each variant's checkpoints (ance.rounds' decisions) are then found by its own jobs, in parallel
        lambda w: sweep_targets(),


onsuccess:
    print_summary()


# What is defined by now (imported modules, the recipe, the rules) lives as long as this process: it leaves the
# garbage collector's scans here. Without this, building the DAG of a finished run set off one more full collection
# (~60 ms) and the interpreter's exit scanned it all again (benchmarks/README.md, start-up).
gc.freeze()
