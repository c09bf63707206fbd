# Input functions of the dev choices (select.smk): the rounds trained so far, the selected round, merged models.


def dev_metrics(round_, name=BASE_VARIANT):
    """Round r's metrics on the dev split (of variant `name`)."""
    path = layout.metrics(layout.round_name(round_), TRAIN_DS, DEV_SPLIT)
    return vout(name, dense_keys(layout.round_name(round_)), path)


def trained_rounds(name=BASE_VARIANT):
    """Rounds 0..R of variant `name`: ance.rounds, or (stopping rule) up to the first decision not to go on. It
    reads the decisions (checkpoints), so call it from input functions only."""
    if STOPPING is None:
        return list(range(ROUNDS + 1))
    folder, r = vfolder(name, sweeps.EVERY), 0
    while json.loads(
        Path(checkpoints.round_decision.get(vdir=folder, round=r).output[0]).read_text()
    )["continue"]:
        r += 1
    return list(range(r + 1))


def selected_round(name=BASE_VARIANT):
    """The round variant `name` chose on dev (a checkpoint's output: call from input functions only)."""
    folder = vfolder(name, sweeps.EVERY)
    path = checkpoints.select_round.get(vdir=folder).output[0]
    return json.loads(Path(path).read_text())["round"]


def merged_round(wildcards):
    """The trained model a merged model mixes with the base: round<r>'s, or the selected round's (of the job's
    variant)."""
    name, which = variant(wildcards), wildcards.which
    r = (
        selected_round(name)
        if which == "selected"
        else int(which.removeprefix("round"))
    )
    return vout(name, sweeps.model_keys(r), layout.round_model(r))


def selected_round_run(wildcards):
    """The run of the round the job's variant selected, on the job's target."""
    name = variant(wildcards)
    dense = layout.round_name(selected_round(name))
    run = layout.run(dense, wildcards.dataset, wildcards.split)
    return vout(name, dense_keys(dense, is_train_target(wildcards)), run)
