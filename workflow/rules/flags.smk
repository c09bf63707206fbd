# Settings rendered as the rules' command-line flags and scalar params.
import dataclasses
import shlex

from dr_core.settings import settings_argv


def token_budget(table):
    """Tokens kept at tokenization: the longest of the training and encoding max lengths."""
    key = "p_max_len" if table == "corpus" else "q_max_len"
    return max(config["model"][key], config["encode"][key] or 0)


def is_train_target(wildcards):
    return wildcards.dataset == TRAIN_DS and wildcards.split == TRAIN_SPLIT


def cli_flags(settings, prefix=""):
    """A config section (or a settings dataclass) as its settings dataclass's flags (dr_core.settings), sorted
    and shell-quoted: a changed value changes the rule's params, so the step reruns."""
    items = (
        dataclasses.asdict(settings) if dataclasses.is_dataclass(settings) else settings
    )
    return shlex.join(settings_argv(dict(sorted(items.items())), prefix))


def teacher_flags():
    """The teacher-scores step's flags (dr_core.teacher.TeacherSettings): the teacher's kind, distill's lengths
    and batch size, the passage template."""
    d = config["distill"]
    keys = ("batch_size", "q_max_len", "max_len")
    return cli_flags(
        {
            "kind": teacher_model()["kind"],
            "template": config["model"]["template"],
            **{k: d[k] for k in keys},
        }
    )


def encoder_spec():
    """The model keys that make up dr_core.model.EncoderSpec."""
    m = config["model"]
    keys = (
        "pooling",
        "similarity",
        "q_max_len",
        "p_max_len",
        "untied",
        "projection_dim",
        "query_template",
        "passage_template",
        "passage_template_untitled",
    )
    return {k: m[k] for k in keys}


def check_index_config():
    """index.nprobe cannot exceed the nlist of an explicit IVF<nlist> index.factory (checked before building)."""
    idx = config["index"]
    match = re.search(r"IVF(\d+)", idx["factory"])
    if idx["nprobe"] is not None and match and idx["nprobe"] > int(match.group(1)):
        raise ValueError(
            f"config: index.nprobe ({idx['nprobe']}) exceeds the {match.group(1)} lists of index.factory "
            f"{idx['factory']!r}"
        )


check_index_config()


def search_args():
    """The retrieve step's search options (index.*), as one command-line string."""
    idx = config["index"]
    args = [f"--query-batch {idx['query_batch']}"]
    args += [f"--nprobe {idx['nprobe']}"] if idx["nprobe"] is not None else []
    args += [f"--ef-search {idx['ef_search']}"] if idx["ef_search"] is not None else []
    args += ["--gpu-fp16"] if idx["gpu_fp16"] else []
    return " ".join(args)
