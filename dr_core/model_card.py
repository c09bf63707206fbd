"""A Hub-style model card (README.md with YAML front matter) for every saved model folder: what it was trained
from and how, its input templates and lengths, how to load it, and its metrics when known."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from dr_core.model import EncoderSpec, st_prompts, template_prefix

CARD_FILE = "README.md"
SETTINGS_SHOWN = (
    "epochs", "batch_size", "group_size", "lr", "temperature", "cross_device", "contrastive_weight",
    "margin_mse_weight", "kl_weight", "lora", "grad_cache_chunk", "seed",
)  # fmt: skip


def front_matter(info: dict, pipeline_tag: str = "sentence-similarity", library: str = "sentence-transformers") -> str:
    """YAML front matter as the Hub reads it; a `pkg:` or local base model is no Hub id and is left out."""
    meta: dict = {
        "library_name": library,
        "tags": [library, "dense-retrieval", "dr_core", pipeline_tag],
        "pipeline_tag": pipeline_tag,
    }
    base = info.get("base", "")
    if base and not base.startswith(("pkg:", "/", ".")):
        meta["base_model"] = base
    if info.get("dataset"):
        meta["datasets"] = [info["dataset"]]
    return "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n"


def input_section(spec: EncoderSpec) -> str:
    """The templates, the lengths and what sentence-transformers can and cannot reproduce of them."""
    prompts = st_prompts(spec)
    doc_prefix = prompts.get("document", "")
    titled_body = spec.passage_template[len(doc_prefix) :] if doc_prefix else spec.passage_template
    lines = [
        "## Inputs",
        "",
        f"- query: `{spec.query_template}`, cut to {spec.q_max_len} tokens (special tokens included)",
        f"- passage with a title: `{spec.passage_template}`; without one: `{spec.passage_template_untitled}`; "
        f"cut to {spec.p_max_len} tokens",
        f"- pooling `{spec.pooling}`, similarity `{spec.similarity}`",
        "",
    ]
    if spec.pooling == "first_decoder":
        lines.append(
            "The embedding is the decoder's first state (OpenMatch's T5 pooling), which sentence-transformers cannot "
            "express: this folder has no sentence-transformers files (`SentenceTransformer(folder)` would build a "
            "different, mean-pooled encoder). Build the texts with the templates above."
        )
        return "\n".join(lines) + "\n"
    lines += [
        f"sentence-transformers prompts: `{json.dumps(prompts)}` (`encode_query` / `encode_document` add them). "
        "sentence-transformers has one `max_seq_length`; it is set to the passage length "
        f"({spec.p_max_len}). Queries were cut at {spec.q_max_len} tokens here: set "
        f"`model.max_seq_length = {spec.q_max_len}` before `encode_query` (and back to {spec.p_max_len} for "
        "passages) to get the same embedding for a long query.",
    ]
    if template_prefix(spec.query_template) is None:
        lines.append(f"The query template is no prefix: pass `{spec.query_template}`.format(text=query) to `encode`.")
    if "{title}" in titled_body or titled_body != "{text}":
        call = "encode_document" if doc_prefix else "encode (no prompt)"
        lines.append(
            f"sentence-transformers cannot build a titled passage: pass `{titled_body}`.format(title=..., "
            f"text=...) to `{call}`, and for an untitled passage its text"
            + ("." if doc_prefix else f" formatted by `{spec.passage_template_untitled}`.")
        )
    return "\n".join(lines) + "\n"


def usage_section(folder_hint: str, spec: EncoderSpec, model_class: str = "AutoModel") -> str:
    """How to load the folder in sentence-transformers, plain transformers (`model_class`) and dr_core."""
    if spec.pooling == "first_decoder":
        return decoder_usage_section(folder_hint, spec)
    pool = "out.last_hidden_state[:, 0]" if spec.pooling == "cls" else "mean over the attention mask"
    return (
        "## Use\n\n```python\nfrom sentence_transformers import SentenceTransformer\n\n"
        f'model = SentenceTransformer("{folder_hint}")\n'
        'q = model.encode_query(["what causes scurvy"])\n'
        'd = model.encode_document(["Vitamin C deficiency causes scurvy."])\n'
        "print(model.similarity(q, d))\n```\n\n"
        f"Plain transformers: `{model_class}.from_pretrained(folder)` and `AutoTokenizer.from_pretrained(folder)`; "
        f"the embedding is {pool}"
        + (", L2-normalised" if spec.similarity == "cosine" else "")
        + (" (a linear projection in `2_Dense/` follows)" if spec.projection_dim else "")
        + ". dr_core: `dr_core.model.BiEncoder.load(folder)`; "
        '`python -m dr_core try --run-dir <results>/<name> --round <r> --dataset <d> "query"` '
        "searches a run's corpus.\n"
    )


def decoder_usage_section(folder_hint: str, spec: EncoderSpec) -> str:
    """Plain transformers' call for a first_decoder model (T5Model: the encoder, then one decoder step)."""
    return (
        "## Use\n\n```python\nimport torch\nfrom transformers import AutoModel, AutoTokenizer\n\n"
        f'tok = AutoTokenizer.from_pretrained("{folder_hint}")\n'
        f'model = AutoModel.from_pretrained("{folder_hint}").eval()\n'
        f'batch = tok(["what causes scurvy"], padding=True, truncation=True, max_length={spec.q_max_len}, '
        'return_tensors="pt")\n'
        "start = torch.zeros(len(batch.input_ids), 1, dtype=torch.long)  # the decoder start token (T5: 0, its pad)\n"
        "emb = model(**batch, decoder_input_ids=start).last_hidden_state[:, 0]\n```\n\n"
        f"Passages the same way, with `max_length={spec.p_max_len}`"
        + ("; the embedding is then L2-normalised" if spec.similarity == "cosine" else "")
        + ("; a linear projection in `2_Dense/` follows" if spec.projection_dim else "")
        + ". dr_core: `dr_core.model.BiEncoder.load(folder)`.\n"
    )


def saved_class(folder: Path) -> str:
    """The transformers class to load the folder's tower with: its encoder-only class (`T5EncoderModel`, which
    AutoModel would load as a whole T5 with a random decoder), else AutoModel."""
    for config in (folder / "config.json", folder / "query_model" / "config.json"):
        if config.exists():
            name = (json.loads(config.read_text()).get("architectures") or ["AutoModel"])[0]
            return name if name.endswith("EncoderModel") else "AutoModel"
    return "AutoModel"


def metrics_section(metrics: list[dict]) -> str:
    """Rows of {dataset, split, metric: value ...} as a Markdown table."""
    if not metrics:
        return "## Metrics\n\nNot evaluated when this card was written (see the run's `summary.tsv`).\n"
    names = [k for k in metrics[0] if k not in ("dataset", "split", "system")]
    head = "| dataset | split | " + " | ".join(names) + " |\n|" + "---|" * (len(names) + 2) + "\n"
    body = "".join(
        f"| {m['dataset']} | {m['split']} | " + " | ".join(f"{float(m[n]):.4f}" for n in names) + " |\n"
        for m in metrics
    )
    return "## Metrics\n\n" + head + body


def training_section(info: dict, settings: dict | None) -> str:
    rnd = info.get("round")
    lines = ["## Training", ""]
    lines.append(f"- base model: `{info.get('base', '?')}`")
    if not settings:
        lines.append("- not trained: the base model saved as a bi-encoder (round 0, the zero-shot baseline)")
    else:
        lines.append(f"- data: `{info.get('dataset', '?')}`, split `{info.get('split', '?')}`")
        lines.append(f"- ANCE round {rnd}; negatives: {info.get('negatives', '?')}")
        shown = {k: settings[k] for k in SETTINGS_SHOWN if k in settings}
        lines.append("- settings: " + ", ".join(f"{k} `{json.dumps(v)}`" for k, v in shown.items()))
    if info.get("recipe"):
        lines.append(f"- recipe `{info['recipe']}`; reproduce with `{info.get('command', 'snakemake --cores all')}`")
    return "\n".join(lines) + "\n"


def write_card(folder: str | Path, spec: EncoderSpec, info: dict, settings: dict | None = None) -> Path:
    """README.md of a saved bi-encoder: front matter, training, inputs, use, metrics (`info["metrics"]`)."""
    rnd = info.get("round")
    title = f"# {info.get('recipe', 'dr_core')}" + (f", round {rnd}" if rnd is not None else "")
    library = "transformers" if spec.pooling == "first_decoder" else "sentence-transformers"
    text = "\n".join(
        [
            front_matter(info, library=library),
            title + "\n",
            "A dense retriever (bi-encoder) trained with dr_core.\n",
            training_section(info, settings),
            input_section(spec),
            usage_section(info.get("path", "path/to/model"), spec, saved_class(Path(folder))),
            metrics_section(info.get("metrics") or []),
        ]
    )
    path = Path(folder) / CARD_FILE
    path.write_text(text)
    return path


def write_reranker_card(folder: str | Path, base: str, template: str, settings: dict) -> Path:
    """README.md of a saved cross-encoder: what it was trained from, its input, how to load it."""
    shown = {k: settings[k] for k in ("epochs", "batch_size", "group_size", "lr", "max_len", "seed") if k in settings}
    text = "\n".join(
        [
            front_matter({"base": base}, pipeline_tag="text-ranking"),
            "# dr_core reranker\n",
            "A cross-encoder trained with dr_core (listwise softmax cross-entropy over a round's groups).\n",
            f"- base model: `{base}`",
            "- settings: " + ", ".join(f"{k} `{json.dumps(v)}`" for k, v in shown.items()),
            f"- input: (query, passage) pairs, the passage built by `{template}` (a passage without title: its "
            f"text), cut to {settings.get('max_len')} tokens, only the passage truncated\n",
            "## Use\n\n```python\nfrom sentence_transformers import CrossEncoder\n\n"
            'model = CrossEncoder("path/to/reranker/model")  # predict() returns the raw logit\n'
            'model.predict([("what causes scurvy", "Title: Scurvy Text: Vitamin C deficiency ...")])\n```\n',
        ]
    )
    path = Path(folder) / CARD_FILE
    path.write_text(text)
    return path
