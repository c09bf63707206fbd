# Input functions and parse-time checks of the Tevatron-format rules (tevatron.smk): where each source is, and
# which file judges a split.
import shlex

TEVATRON_CACHE = f"{config['download_dir']}/huggingface"


def tevatron_source(name, split=None):
    """Dataset `name`'s corpus source, or with `split` its query groups' source: a Hub dataset or hf:// URL as
    given, a local data file relative to the repository."""
    ds = _dataset(name)
    if split is None:
        source = ds.get("corpus")
        if not source:
            raise ValueError(
                f"config: datasets.{name}.corpus is required (kind tevatron)"
            )
    else:
        source = ds.get("groups", {}).get(split)
        if not source:
            raise ValueError(
                f"config: datasets.{name}.groups has no split '{split}' (kind tevatron; it has "
                f"{sorted(ds.get('groups', {}))})"
            )
    return repo_path(source) if tevatron_local(source) else source


def tevatron_local(source):
    """Whether a source is a local data file (an input of its rule) rather than on the Hub."""
    from dr_core.data.tevatron import is_data_file

    return is_data_file(source) and "://" not in source


def tevatron_file(groups):
    """Input function: the local data file of the corpus (or of a split's groups); none for the Hub, whose
    source name is in `params.src` (the rerun trigger)."""

    def inputs(wildcards):
        source = tevatron_source(wildcards.dataset, wildcards.split if groups else None)
        return [source] if tevatron_local(source) else []

    return inputs


def tevatron_judgements(wildcards):
    """The file judging a split instead of its groups' positives (datasets.<name>.qrels): one of MS MARCO's
    published files, fetched as for kind msmarco, or a path relative to the repository; none otherwise.
    """
    name = _dataset(wildcards.dataset).get("qrels", {}).get(wildcards.split)
    if not name:
        return []
    return (
        msmarco_path(wildcards.dataset, name) if name in RAW_FILES else repo_path(name)
    )


for _target in [config["data"]["train"], *config["data"]["eval"]]:
    if _dataset(_target["dataset"])["kind"] == "tevatron":
        tevatron_source(_target["dataset"])
        tevatron_source(_target["dataset"], _target["split"])
