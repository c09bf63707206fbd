# The ranking systems a recipe evaluates, by name, and the check that every named one exists.
import re


# Dense systems named in hybrid.rounds and merge.rounds: a round number, `selected` (the round chosen on dev) or
# a merged model (wise-round<r>, wise-selected: merge.alpha of the round, the rest the base model's weights).
def dense_name(entry):
    return f"round{entry}" if isinstance(entry, int) else entry


MERGED = [f"wise-{dense_name(r)}" for r in config["merge"]["rounds"]]
HYBRID_DENSE = [dense_name(r) for r in config["hybrid"]["rounds"]]
RERANKED = config["reranker"]["systems"]


def systems(rounds):
    """Every ranking system that is evaluated, for trained rounds `rounds`: BM25, the base model (round 0,
    zero-shot), each round, `selected` (with data.dev), the merged models, BM25 fused with a dense system
    (hybrid.rounds; fusion.smk), and any of these re-scored by the cross-encoder (reranker.systems; rerank.smk).
    """
    out = (
        ["bm25"]
        + [f"round{r}" for r in rounds]
        + (["selected"] if DEV else [])
        + MERGED
    )
    for dense in HYBRID_DENSE:
        m = re.fullmatch(r"round(\d+)", dense)
        if m is None or int(m.group(1)) in rounds:
            out.append(f"bm25+{dense}")
    return out + [f"{s}+rerank" for s in RERANKED if s in out]


def check_systems():
    """Named systems exist: rounds within ance.rounds, `selected` only with a dev split, reranked ones."""
    named = [*HYBRID_DENSE, *(m.removeprefix("wise-") for m in MERGED), *RERANKED]
    if not DEV and any("selected" in name for name in named):
        raise ValueError(
            "config: the system `selected` (hybrid.rounds, merge.rounds) is chosen on dev; set data.dev"
        )
    for key, names in (
        ("hybrid.rounds", HYBRID_DENSE),
        ("merge.rounds", [m.removeprefix("wise-") for m in MERGED]),
    ):
        late = [
            n for n in names if re.fullmatch(r"round(\d+)", n) and int(n[5:]) > ROUNDS
        ]
        if late:
            raise ValueError(f"config: {key} has {late} past ance.rounds ({ROUNDS})")
    every = systems(range(ROUNDS + 1))
    unknown = [b for b in config["eval"]["baselines"] if b not in every]
    if unknown:
        raise ValueError(
            f"config: eval.baselines has {unknown}, not among this recipe's systems {every}"
        )
    if set(RERANKED) - set(every):
        raise ValueError(
            f"config: reranker.systems has {sorted(set(RERANKED) - set(every))}, not among this recipe's "
            f"systems {every}"
        )


check_systems()
