"""Sweeps (dr_core.sweep): grid and named variants expanded, checked against the schema, and the folder of each
variant's files (shared where the step reads no varied key)."""

from __future__ import annotations

import copy

import pandas as pd
import pytest
import yaml
from conftest import REPO
from snakemake.utils import validate

from dr_core import sweep as sw

SCHEMA_PATH = REPO / "workflow" / "schemas" / "config.schema.yaml"
SCHEMA = yaml.safe_load(SCHEMA_PATH.read_text())


def check(config: dict) -> None:
    validate(config, schema=str(SCHEMA_PATH))


@pytest.fixture
def recipe() -> dict:
    """The fixture recipe over the default one, validated (defaults filled)."""
    config = sw.merge(
        yaml.safe_load((REPO / "config" / "config.yaml").read_text()),
        yaml.safe_load((REPO / "tests" / "fixtures" / "workflow_config.yaml").read_text()),
    )
    check(config)
    return config


def with_sweep(recipe: dict, **sweep) -> dict:
    return {**copy.deepcopy(recipe), "sweep": sweep}


def test_grid_names_every_combination_and_keeps_the_base_point(recipe):
    grid = {"train.lr": [1.0e-4, 2.0e-4], "train.group_size": [3, 2]}
    configs, base = sw.expand(with_sweep(recipe, grid=grid), SCHEMA, check)
    assert list(configs) == [
        "lr=0.0001,group_size=3",
        "lr=0.0001,group_size=2",
        "lr=0.0002,group_size=3",
        "lr=0.0002,group_size=2",
    ]
    assert base == "lr=0.0001,group_size=3"  # the fixture's own values: that point is the base recipe
    assert configs["lr=0.0002,group_size=2"]["train"]["lr"] == 2.0e-4
    assert configs["lr=0.0002,group_size=2"]["train"]["epochs"] == recipe["train"]["epochs"]


def test_a_grid_without_the_base_point_adds_the_base_variant(recipe):
    configs, base = sw.expand(with_sweep(recipe, grid={"train.lr": [2.0e-5]}), SCHEMA, check)
    assert base == "base" and list(configs) == ["base", "lr=2e-05"]


def test_named_variants_patch_the_recipe(recipe):
    variants = {
        "filter": {"negatives": {"mine": {"filter": {"relative": 0.95}}}},
        "n4": {"negatives": {"mine": {"n": 4}}},
    }
    configs, base = sw.expand(with_sweep(recipe, variants=variants), SCHEMA, check)
    assert base == "base" and list(configs) == ["base", "filter", "n4"]
    assert configs["n4"]["negatives"]["mine"]["n"] == 4
    assert configs["n4"]["negatives"]["mine"]["depth"] == recipe["negatives"]["mine"]["depth"]


def test_clashing_last_parts_keep_the_whole_key(recipe):
    grid = {"negatives.first_stage.n": [4], "negatives.mine.n": [4, 8]}
    configs, _ = sw.expand(with_sweep(recipe, grid=grid), SCHEMA, check)
    assert "negatives.first_stage.n=4,negatives.mine.n=8" in configs


@pytest.mark.parametrize(
    ("sweep", "words"),
    [
        ({"variants": {"v1": {"train": {"lrr": 1.0e-5}}}}, ["'v1'", "train.lrr", "not a recipe key"]),
        ({"variants": {"v1": {"train": {"lr": "fast"}}}}, ["'v1'", "train.lr", "not a valid recipe"]),
        ({"grid": {"train.lrr": [1.0e-5]}}, ["train.lrr", "not a recipe key"]),
        ({"variants": {"base": {"train": {"lr": 1.0e-5}}}}, ["two variants", "'base'"]),
        ({"grid": {"train.lr": [1.0e-5]}, "variants": {"lr=1e-05": {}}}, ["two variants", "'lr=1e-05'"]),
        ({"variants": {"ood": {"data": {"eval": []}}}}, ["'ood'", "data.eval", "not comparable"]),
        ({"variants": {"deep": {"negatives": {"first_stage": {"depth": 50}}}}}, ["'deep'", "first_stage.depth"]),
        ({"variants": {"pool": {"model": {"pooling": "cls"}}}}, ["'pool'", "model.pooling", "training-side"]),
        ({"grid": {"train.lr": [1.0e-5, 1.0e-5]}}, ["twice"]),
    ],
)
def test_bad_variants_are_refused_naming_variant_and_key(recipe, sweep, words):
    with pytest.raises(sw.SweepError) as err:
        sw.expand(with_sweep(recipe, **sweep), SCHEMA, check)
    for word in words:
        assert word in str(err.value)


def test_no_sweep_is_the_base_alone(recipe):
    configs, base = sw.expand(recipe, SCHEMA, check)
    assert base == "base" and list(configs) == ["base"]


def test_folders_share_what_reads_no_varied_key(recipe):
    grid = {"train.lr": [1.0e-4, 2.0e-4], "negatives.mine.n": [8, 4]}
    configs, base = sw.expand(with_sweep(recipe, grid=grid), SCHEMA, check)
    other_lr = "lr=0.0002,n=8"
    other_n = "lr=0.0001,n=4"
    both = "lr=0.0002,n=4"
    assert sw.folder(configs, base, both, sw.negatives_keys(1)) == ""  # BM25's negatives: shared
    assert sw.folder(configs, base, other_n, sw.model_keys(1)) == ""  # round 1 reads no negatives.mine key
    assert sw.folder(configs, base, both, sw.model_keys(1)) == f"variants/{other_lr}/"  # same lr: lr's folder
    assert sw.folder(configs, base, both, sw.model_keys(2)) == f"variants/{both}/"
    assert sw.folder(configs, base, other_n, sw.run_keys(1, train_target=True)) == ""  # depth not varied
    assert sw.variant_of(f"variants/{both}/", base) == both and sw.variant_of("", base) == base


def test_adding_a_variant_moves_no_earlier_folder(recipe):
    grid = {"train.lr": [1.0e-4, 2.0e-4]}
    before, base = sw.expand(with_sweep(recipe, grid=grid), SCHEMA, check)
    n4 = {"n4": {"negatives": {"mine": {"n": 4}}}}
    after, _ = sw.expand(with_sweep(recipe, grid=grid, variants=n4), SCHEMA, check)
    for name in before:
        for r in (0, 1, 2):
            assert sw.folder(before, base, name, sw.model_keys(r)) == sw.folder(after, base, name, sw.model_keys(r))


def write_variant(tmp_path, name: str, dev: list[float], chosen: int, test: list[float]) -> tuple[str, list[str]]:
    """A variant's choice file and its `selected` metrics on one test target (per-query ndcg@10 `test`)."""
    from dr_core.atomic import write_json

    choice = tmp_path / name / "choice.json"
    metrics = tmp_path / name / "metrics.test.json"
    choice.parent.mkdir(parents=True)
    write_json({"round": chosen, "metric": "ndcg@10", "dev": dev}, choice)
    per_query = {f"q{i}": {"ndcg@10": v, "map": v / 2} for i, v in enumerate(test)}
    mean = {m: sum(q[m] for q in per_query.values()) / len(test) for m in ("ndcg@10", "map")}
    write_json(
        {"system": "selected", "dataset": "tiny", "split": "test", "metrics": mean, "per_query": per_query}, metrics
    )
    return str(choice), [str(metrics)]


def test_sweep_table_picks_the_best_variant_on_dev_and_tests_against_the_base(tmp_path):
    from dr_core.sweep_table import sweep_table

    base = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    variants = {
        "base": write_variant(tmp_path, "base", [0.1, 0.3, 0.2], 1, base),
        "a": write_variant(tmp_path, "a", [0.1, 0.2, 0.5], 2, [v + 0.01 * (i % 2) for i, v in enumerate(base)]),
        # b: best on test, not on dev
        "b": write_variant(tmp_path, "b", [0.1, 0.4, 0.3], 1, [v + 0.3 + 0.02 * i for i, v in enumerate(base)]),
        "c": write_variant(tmp_path, "c", [0.1, 0.2, 0.2], 1, base),
    }
    table, pvalues, marked, metric = sweep_table(variants, "base", 0.05)
    assert list(table["variant"]) == ["base", "a", "b", "c"] and metric == "ndcg@10"
    assert list(table["selected"]) == [1, 2, 1, 1] and list(table["dev_ndcg@10"]) == [0.3, 0.5, 0.4, 0.2]
    assert list(table["best"]) == ["", "*", "", ""]  # the dev argmax, although b is better on test
    p = pvalues["p_vs_base"]
    assert pd.isna(p[0]) and p[2] < 0.05 and p[3] == 1.0  # c equals the base: p = 1
    assert marked[2].endswith("a+") and marked[1].startswith(f"{table['ndcg@10'][1]:.4f}")
