# Dense-retrieval training loop (BM25 negatives -> train -> encode -> retrieve -> mine -> train ...) as one DAG.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/bm25.smk"
include: "workflow/rules/negatives.smk"
include: "workflow/rules/model.smk"
include: "workflow/rules/retrieval.smk"
include: "workflow/rules/evaluate.smk"


rule all:
    input:
        all_targets(),
    default_target: True


onsuccess:
    print_summary()
