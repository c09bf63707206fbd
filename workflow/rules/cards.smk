# Facts for each round's model card (dr_core.model_card).


def model_card(round_):
    """Facts for the model card of round `round_` (dr_core.model_card): recipe, base, data, negatives."""
    neg = config["negatives"]
    if int(round_) == 0:
        negatives = None
    elif int(round_) == 1:
        negatives = (
            "BM25 top ranks"
            if neg["source"] == "bm25"
            else f"{neg['source']} ({first_negatives_file()})"
        )
    else:
        negatives = f"mined with the round-{int(round_) - 1} model"
    info = {
        "recipe": config["name"],
        "base": config["model"]["base"],
        "dataset": TRAIN_DS,
        "split": TRAIN_SPLIT,
        "round": int(round_),
        "negatives": negatives,
        "command": "snakemake --cores all --configfile <this recipe>",
    }
    return json.dumps(info)
