# Input functions of the dev choices (select.smk): the rounds trained so far, the selected round, merged models.


def dev_metrics(round_):
    """Round r's metrics on the dev split."""
    return out(layout.metrics(layout.round_name(round_), TRAIN_DS, DEV_SPLIT))


def trained_rounds():
    """Rounds 0..R of this recipe: ance.rounds, or (stopping rule) up to the first decision not to go on. It reads
    the decisions (checkpoints), so call it from input functions only."""
    if STOPPING is None:
        return list(range(ROUNDS + 1))
    r = 0
    while json.loads(
        Path(checkpoints.round_decision.get(round=r).output[0]).read_text()
    )["continue"]:
        r += 1
    return list(range(r + 1))


def selected_round():
    """The round chosen on dev (a checkpoint's output: call from input functions only)."""
    return json.loads(Path(checkpoints.select_round.get().output[0]).read_text())[
        "round"
    ]


def merged_round(wildcards):
    """The trained model a merged model mixes with the base: round<r>'s, or the selected round's."""
    which = wildcards.which
    return out(
        layout.round_model(
            selected_round() if which == "selected" else which.removeprefix("round")
        )
    )
