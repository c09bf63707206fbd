"""Sweeps: a recipe's `sweep` section (a grid of values, or named variants that each patch the recipe) expanded
into named variant configs, and where each variant's files go.

The base recipe is one variant (`base`, or the grid point that equals it). Each step's results live in the
shared tree (`results/<name>/...`) when the variant agrees with the base on every key the step depends on
(`STEP_KEYS`), else under the folder of the first variant that agrees with it on those keys
(`variants/<variant>/...`): steps that read no varied key are shared by their paths, and a variant added later
never moves an earlier one's files. No Snakemake here: the workflow hands in its schema check (`validate`).
"""

from __future__ import annotations

import copy
import itertools
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

BASE = "base"
VARIANTS_DIR = "variants"
NAME = re.compile(r"^[A-Za-z0-9._=,+-]+$")

# The keys a sweep may vary: the training side. Steps before training (data, tokenization, BM25, round 0) read
# none of them, so they are shared by every variant.
SWEEPABLE = ("train", "dro", "negatives.first_stage", "negatives.mine", "negatives.seed")
# Keys refused with their own reason (checked before SWEEPABLE).
REFUSED = {
    "negatives.first_stage.depth": "it sets the depth of BM25's run of the train queries, a step every variant shares",
    "data.eval": "it changes the evaluation datasets, so the variants' figures are not comparable",
    "data.dev": "it changes the dev split the rounds are chosen on, so the variants' choices are not comparable",
    "datasets": "it changes the datasets, so the variants' figures are not comparable",
    "eval": "it changes how every variant is evaluated, so the variants' figures are not comparable",
    "name": "it is the sweep's results folder",
}

# What a results file depends on, as config key prefixes: the files of round r and of the systems built on them.
FIRST = ("negatives.first_stage", "negatives.seed")
TRAINING = ("train", "dro")
MINE = ("negatives.mine",)
EVERY = SWEEPABLE


def negatives_keys(round_: int) -> tuple[str, ...]:
    """Keys round r's training negatives depend on: round 1's come from BM25's run (first_stage), round r >= 2's
    are mined with round r-1's model."""
    return FIRST if round_ <= 1 else EVERY


def model_keys(round_: int) -> tuple[str, ...]:
    """Keys round r's model depends on (round 0 is the base model: none)."""
    if round_ <= 0:
        return ()
    return (*negatives_keys(round_), *TRAINING) if round_ == 1 else EVERY


def run_keys(round_: int, train_target: bool) -> tuple[str, ...]:
    """Keys a run of round r (its embeddings, index, run and metrics) depends on; the train queries' run is
    negatives.mine.depth deep."""
    return (*model_keys(round_), *(("negatives.mine.depth",) if train_target else ()))


def clusters_keys(round_: int) -> tuple[str, ...]:
    """DRO's query clusters for round r: round r-1's model, dro.num_clusters, train.seed."""
    return (*model_keys(round_ - 1), "dro", "train.seed")


class SweepError(ValueError):
    """A sweep section that cannot be run: the message names the variant and the key."""


def get(config: Mapping[str, Any], key: str) -> Any:
    """The value of a dotted key (`train.lr`); KeyError when a part is missing."""
    value: Any = config
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            raise KeyError(key)
        value = value[part]
    return value


def dotted(patch: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested patch as {dotted key: leaf value}; a mapping leaf (an empty one) stays a value."""
    out = {}
    for key, value in patch.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(dotted(value, f"{name}."))
        else:
            out[name] = value
    return out


def nested(key: str, value: Any) -> dict[str, Any]:
    """`train.lr`, 1e-5 as {"train": {"lr": 1e-5}}."""
    out: Any = value
    for part in reversed(key.split(".")):
        out = {part: out}
    return out


def merge(base: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `patch` laid over it (mappings merged key by key, anything else replaced), both left intact."""
    out = copy.deepcopy(dict(base))
    for key, value in patch.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def schema_keys(schema: Mapping[str, Any], key: str) -> bool:
    """Whether a dotted key is a recipe key of the JSON schema (named properties, or the values of a mapping
    whose properties are free)."""
    node: Any = schema
    for part in key.split("."):
        props = node.get("properties", {}) if isinstance(node, Mapping) else {}
        if part in props:
            node = props[part]
        elif isinstance(node, Mapping) and isinstance(node.get("additionalProperties"), Mapping):
            node = node["additionalProperties"]
        else:
            return False
    return True


def check_key(where: str, key: str, schema: Mapping[str, Any]) -> None:
    """A key a variant (`where`: "variant 'v1'", or "the grid") sets must be a recipe key a sweep may vary."""
    if not schema_keys(schema, key):
        raise SweepError(f"sweep: {where} sets '{key}', which is not a recipe key")
    for refused, why in REFUSED.items():
        if key == refused or key.startswith(f"{refused}."):
            raise SweepError(f"sweep: {where} sets '{key}', which a sweep cannot vary: {why}")
    if not any(key == k or key.startswith(f"{k}.") for k in SWEEPABLE):
        raise SweepError(
            f"sweep: {where} sets '{key}'; a sweep varies only the training-side keys {', '.join(SWEEPABLE)} for now"
        )


def value_text(value: Any) -> str:
    """A grid value in a variant name: 2e-05, 4, true, null, or compact JSON-ish text."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value).replace(" ", "")


def grid_names(keys: Sequence[str]) -> list[str]:
    """The label of each grid key in variant names: its last part, or the whole key where two last parts clash."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return [short if last.count(short) == 1 else key for short, key in zip(last, keys)]


def grid_variants(grid: Mapping[str, Sequence[Any]]) -> dict[str, dict[str, Any]]:
    """Every combination of the grid's values (first key slowest) as {name: patch}; a name is
    `lr=2e-05,group_size=2`."""
    keys = list(grid)
    for key in keys:
        values = grid[key]
        if not isinstance(values, list) or not values:
            raise SweepError(f"sweep: grid key '{key}' needs a non-empty list of values, got {values!r}")
    labels = grid_names(keys)
    out = {}
    for combo in itertools.product(*(grid[k] for k in keys)):
        name = ",".join(f"{label}={value_text(v)}" for label, v in zip(labels, combo))
        if name in out:
            raise SweepError(f"sweep: grid gives the variant '{name}' twice (a value repeated in its list)")
        patch: dict[str, Any] = {}
        for key, value in zip(keys, combo):
            patch = merge(patch, nested(key, value))
        out[name] = patch
    return out


def expand(
    config: Mapping[str, Any],
    schema: Mapping[str, Any],
    validate: Callable[[dict[str, Any]], None],
) -> tuple[dict[str, dict[str, Any]], str]:
    """({variant name: its full config}, the base variant's name) of a validated recipe with a `sweep` section
    (`grid` and/or `variants`); without one, {"base": config}. The base variant is the grid point equal to the
    recipe, else `base` (first). `validate` checks (and fills) a config against
    the schema, raising on a bad value. Every error names the variant and the key."""
    sweep = config.get("sweep") or {}
    base = {k: v for k, v in config.items() if k != "sweep"}
    patches: dict[str, dict[str, Any]] = {}
    grid = sweep.get("grid") or {}
    for key in grid:
        check_key("the grid", key, schema)
    grid_points = grid_variants(grid) if grid else {}
    named = sweep.get("variants") or {}
    for name in named:
        if name in grid_points:
            raise SweepError(f"sweep: two variants are named '{name}' (sweep.variants and sweep.grid)")
    patches.update(grid_points)
    for name, patch in named.items():
        if name == BASE:
            raise SweepError(f"sweep: two variants are named '{BASE}': the base recipe is the variant '{BASE}'")
        if not isinstance(patch, Mapping):
            raise SweepError(f"sweep: variant '{name}' must be a mapping of recipe keys, got {patch!r}")
        patches[name] = dict(patch)
    configs: dict[str, dict[str, Any]] = {}
    for name, patch in patches.items():
        if not NAME.match(name):
            raise SweepError(f"sweep: variant name '{name}' is not a folder name ([A-Za-z0-9._=,+-])")
        for key in dotted(patch):
            check_key(f"variant '{name}'", key, schema)
        variant = merge(base, patch)
        try:
            validate(variant)
        except Exception as err:  # the schema check's message names the key and the value
            keys = ", ".join(dotted(patch))
            raise SweepError(f"sweep: variant '{name}' ({keys}) is not a valid recipe: {err}") from err
        configs[name] = variant
    base_name = next((n for n in grid_points if same(configs[n], base, EVERY)), None)
    if base_name is None:
        configs = {BASE: base, **configs}
        base_name = BASE
    return configs, base_name


def same(a: Mapping[str, Any], b: Mapping[str, Any], keys: Sequence[str]) -> bool:
    """Whether two configs agree on every key (dotted prefix) of `keys`; a key neither has agrees."""

    def value(config: Mapping[str, Any], key: str) -> Any:
        try:
            return get(config, key)
        except KeyError:
            return None

    return all(value(a, k) == value(b, k) for k in keys)


def folder(configs: Mapping[str, Mapping[str, Any]], base: str, variant: str, keys: Sequence[str]) -> str:
    """The results subfolder of `variant`'s file that depends on `keys`: '' (the shared tree) when it agrees with
    the base variant on them, else `variants/<first variant that agrees with it>/`."""
    mine = configs[variant]
    if same(mine, configs[base], keys):
        return ""
    owner = next(n for n, c in configs.items() if same(c, mine, keys))
    return f"{VARIANTS_DIR}/{owner}/"


def variant_of(folder_: str, base: str) -> str:
    """The variant whose config a job in `folder_` (a `folder` result) runs with."""
    return folder_.removeprefix(f"{VARIANTS_DIR}/").rstrip("/") or base
