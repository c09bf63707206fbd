# Inputs and targets of the model card and Hub rules (hub.smk).
HUB = config["hub"]
HUB_ROUND = ROUNDS if HUB["round"] is None else HUB["round"]


def round_metric_files(wildcards):
    """Round r's metrics on every evaluation target, in config order."""
    return [
        out(
            layout.metrics(layout.round_name(wildcards.round), t["dataset"], t["split"])
        )
        for t in config["data"]["eval"]
    ]


def reproduce_command(round_):
    """The command that rebuilds round `round_`'s card (its model, evaluations and card) from the repository,
    with this run's config files: relative to the repository when inside it, so a copy of the repository with
    its results does not rerun the card for a changed path."""
    files = "".join(
        f" --configfile {os.path.relpath(f, workflow.basedir) if Path(f).is_relative_to(workflow.basedir) else f}"
        for f in workflow.overwrite_configfiles
    )
    return f"snakemake --cores all {out(layout.model_card(round_))}{files}"


def card_targets():
    """Every round's card, and the Hub upload when `hub.repo_id` is set and its token variable holds a value."""
    cards = expand(out(layout.model_card()), round=trained_rounds())
    push = HUB["repo_id"] and os.environ.get(HUB["token_env"])
    return cards + ([out(layout.hub_push(HUB_ROUND))] if push else [])
