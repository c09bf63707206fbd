# Resources, threads and conda environments of the rules: config `resources.<rule>`, else the CPU or GPU default.
# Each rule's `code` param is step_fingerprint(<its dr_core command>): editing that code reruns the rule.
from dr_core.memo import step_fingerprints

step_fingerprint = step_fingerprints(MEMO)  # dr_core.fingerprint's, kept in MEMO

GPU_RULES = {
    "train",
    "encode",
    "retrieve",
    "positive_scores",
    "teacher_scores",
    "cluster",
    "train_reranker",
    "rerank",
}
CPU_ENV = "../../envs/cpu.yaml"
GPU_ENV = "../../envs/gpu.yaml"


BUILTIN_RESOURCES = {
    "default": {"threads": 2, "mem_mb": 4000, "runtime": 60, "gpu": 0},
    "gpu_default": {"threads": 2, "mem_mb": 16000, "runtime": 720, "gpu": 1},
}


def res(rule_name, key):
    """A resource of a rule: config `resources.<rule>`, else `default`/`gpu_default`, else built in."""
    group = "gpu_default" if rule_name in GPU_RULES else "default"
    for source in (
        config["resources"].get(rule_name, {}),
        config["resources"].get(group, {}),
        BUILTIN_RESOURCES[group],
    ):
        if key in source:
            return source[key]


def rule_resources(rule_name):
    return dict(
        mem_mb=res(rule_name, "mem_mb"),
        runtime=res(rule_name, "runtime"),
        gpu=res(rule_name, "gpu"),
    )


def launcher(wildcards, resources):
    """torchrun for a multi-GPU job, plain python otherwise."""
    if (
        resources.gpu > 1
    ):  # `--` keeps torchrun from reading our options (it would take --log as its own)
        return f"torchrun --standalone --nproc_per_node {resources.gpu} -m --"
    return "python -m"
