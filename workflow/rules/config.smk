# The recipe's config: validated against the schema (defaults filled), templates and rank windows checked, and the
# values every other file reads (train target, dev split, rounds).
import json
from importlib.metadata import version
from pathlib import Path

import dr_core.sweep as sweeps
from dr_core.memo import Memo, add_missing, digest
from dr_core.templates import PASSAGE_TEMPLATE, check_template
from snakemake import __version__ as snakemake_version
from snakemake.utils import validate

# What every invocation would compute again (schema, validated recipes, code fingerprints), kept by dr_core.memo.
MEMO = Memo(Path(".snakemake", "dr_core-memo.json"))


def load_schema():
    """The config schema and a digest of its text, kept in MEMO. Read with libyaml: Snakemake reads a YAML
    schema in pure Python, 0.25-0.5 s of every invocation (even `-n`), and JSON in C."""
    path = Path(workflow.basedir, "workflow", "schemas", "config.schema.yaml")
    text = path.read_bytes()
    key = digest(text)
    schema = MEMO.get(f"schema {key}")
    if schema is None:
        import yaml

        schema = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        MEMO.put(f"schema {key}", schema)
    return schema, key


SCHEMA, SCHEMA_KEY = load_schema()


# What a validation depends on besides the recipe: the schema and the validators' versions.
VALIDATOR = digest(SCHEMA_KEY, snakemake_version, version("jsonschema"))


def recipe_key(recipe):
    """MEMO's key of a validated recipe; None (validated every time) where JSON would not give it back (a YAML
    date, a tuple, mixed keys) or where validation is skipped (skip_validation)."""
    if workflow.modifier.skip_validation:
        return None
    try:
        text = json.dumps(recipe, sort_keys=True)
    except (TypeError, ValueError):
        return None
    return "recipe " + digest(VALIDATOR, text) if json.loads(text) == recipe else None


def validate_recipe(recipe):
    """Validate (and fill defaults into) a recipe against the schema, handed to Snakemake's validate as JSON.
    A recipe validated before gets its defaults back from MEMO (jsonschema's import is most of the time).
    """
    import tempfile

    key = recipe_key(recipe)
    filled = MEMO.get(key) if key else None
    if filled is not None:
        add_missing(recipe, filled)
        return
    with tempfile.NamedTemporaryFile("w", suffix=".schema.json") as tmp:
        json.dump(SCHEMA, tmp)
        tmp.flush()
        validate(recipe, schema=tmp.name)
    if key:
        MEMO.put(key, recipe)


validate_recipe(config)


def resolve_templates():
    """model.template is the older name of model.passage_template: read it, refuse a conflict, keep both
    keys equal (rules read either), and check every template's fields."""
    m = config["model"]
    if m["template"] is not None:
        if m["passage_template"] not in (PASSAGE_TEMPLATE, m["template"]):
            raise ValueError(
                "config: model.template (older name of model.passage_template) and model.passage_template "
                "are both set and differ; keep model.passage_template only"
            )
        m["passage_template"] = m["template"]
    m["template"] = m["passage_template"]
    check_template(m["query_template"], {"text"}, "model.query_template")
    check_template(m["passage_template"], {"title", "text"}, "model.passage_template")
    check_template(
        m["passage_template_untitled"], {"text"}, "model.passage_template_untitled"
    )


resolve_templates()


def check_rank_windows(recipe, where="config"):
    """A negatives window must fit in the ranking it samples from: rank_min <= rank_max <= depth."""
    for stage in ("first_stage", "mine"):
        w = recipe["negatives"][stage]
        if w["rank_max"] > w["depth"]:
            raise ValueError(
                f"{where}: negatives.{stage}.rank_max ({w['rank_max']}) exceeds negatives.{stage}.depth "
                f"({w['depth']}), the length of the ranking it samples from"
            )
        if w["rank_min"] > w["rank_max"]:
            raise ValueError(
                f"{where}: negatives.{stage}.rank_min ({w['rank_min']}) exceeds negatives.{stage}.rank_max "
                f"({w['rank_max']})"
            )


# The sweep's variants (dr_core.sweep): {name: validated config}, the base recipe one of them (BASE_VARIANT).
VARIANTS, BASE_VARIANT = sweeps.expand(config, SCHEMA, validate_recipe)
SWEEP = len(VARIANTS) > 1
for _name, _recipe in VARIANTS.items():
    check_rank_windows(_recipe, f"sweep: variant '{_name}'" if SWEEP else "config")


TRAIN_DS = config["data"]["train"]["dataset"]
TRAIN_SPLIT = config["data"]["train"]["split"]
DEV = config["data"]["dev"]
CARVED = DEV["share"] is not None or DEV["count"] is not None
DEV_SPLIT = DEV["split"] or ("dev" if CARVED else None)
DEV = DEV if DEV_SPLIT else None
SELECT_METRIC = config["eval"]["select_metric"]


def parse_rounds():
    """ance.rounds as (max rounds, stopping rule or None), the rule's defaults filled."""
    rounds = config["ance"]["rounds"]
    if not isinstance(rounds, dict):
        return rounds, None
    stop = {
        "patience": 1,
        "min_delta": 0.0,
        **rounds,
    }  # the schema checked their values
    if not DEV:
        raise ValueError(
            "config: ance.rounds {max, patience} stops on the dev metric; set data.dev"
        )
    return stop["max"], stop


ROUNDS, STOPPING = parse_rounds()
SHARDS = config["encode"]["num_shards"]
