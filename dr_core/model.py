"""The bi-encoder: a transformer (or two, untied) with pooling, optional projection and normalisation.

A saved model is a `save_pretrained` directory that plain `transformers` and `sentence-transformers` load;
`dr_encoder.json` beside the weights records pooling, similarity and max lengths. A projection head is kept
in the sentence-transformers Dense format (`2_Dense/config.json` and `2_Dense/model.safetensors`).

Encoder-decoder models (T5) pool as OpenMatch does: `first_decoder` runs the decoder for one step from its
start token and takes that state (OpenMatch's default for T5); `cls` and `mean` load the encoder alone
(`T5EncoderModel`, OpenMatch's `--encoder_only`, and what sentence-transformers loads for T5). Only the
encoder-only forms get sentence-transformers files: sentence-transformers has no decoder-token pooling.
"""

from __future__ import annotations

import importlib.resources
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from string import Formatter
from typing import Any

import torch
import torch.nn.functional as F
import transformers
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer, PretrainedConfig, PreTrainedTokenizerBase

from dr_core.lora import LoraSettings, add_lora, merged
from dr_core.settings import setting
from dr_core.templates import PASSAGE_TEMPLATE, PLAIN, check_template

ENCODER_FILE = "dr_encoder.json"
DENSE_DIR = "2_Dense"
POOLINGS = ("cls", "mean", "first_decoder")
SIMILARITIES = ("dot", "cosine")
# Encoder-decoder families whose encoder loads alone, for cls/mean pooling (sentence-transformers loads the same).
ENCODER_ONLY_CLASSES = {"t5": "T5EncoderModel", "mt5": "MT5EncoderModel", "umt5": "UMT5EncoderModel"}


@dataclass
class EncoderSpec:
    """How embeddings are made from a transformer: recorded with every saved model."""

    pooling: str = setting("cls", "cls: first token; mean; first_decoder: an encoder-decoder's first state", POOLINGS)
    similarity: str = setting("dot", "dot product, or cosine (L2-normalised embeddings)", SIMILARITIES)
    q_max_len: int = setting(32, "query max tokens, special tokens included")
    p_max_len: int = setting(256, "passage max tokens, special tokens included")
    untied: bool = setting(False, "separate query and passage encoders")
    projection_dim: int | None = setting(None, "linear projection of the pooled embedding to this size; null: none")
    query_template: str = setting(PLAIN, "query text around {text}, e.g. 'query: {text}' or an instruction")
    passage_template: str = setting(PASSAGE_TEMPLATE, "passage text from {title} and {text}")
    passage_template_untitled: str = setting(PLAIN, "a passage without title, from {text}")

    def __post_init__(self) -> None:
        check_template(self.query_template, {"text"}, "model.query_template")
        check_template(self.passage_template, {"title", "text"}, "model.passage_template")
        check_template(self.passage_template_untitled, {"text"}, "model.passage_template_untitled")
        if self.pooling not in POOLINGS:
            raise ValueError(f"model.pooling must be one of {', '.join(POOLINGS)}, not {self.pooling!r}")
        if self.similarity not in SIMILARITIES:
            raise ValueError(f"model.similarity must be 'dot' or 'cosine', not {self.similarity!r}")


def resolve_model_path(name: str) -> str:
    """A hub name, a local path, or `pkg:<module>/<sub/path>` for weights shipped inside a Python package."""
    if name.startswith("pkg:"):
        module, _, sub = name[4:].partition("/")
        path = importlib.resources.files(module).joinpath(sub)
        if not Path(str(path)).is_dir():
            raise FileNotFoundError(f"model {name!r}: {path} is not a directory")
        return str(path)
    return name


def tower_class(path: str, pooling: str) -> type:
    """The transformers class of a tower: AutoModel, or for `cls`/`mean` on an encoder-decoder (T5) its encoder
    alone. A ValueError naming model.pooling for decoder pooling on an encoder-only model, or an encoder-decoder
    whose encoder dr_core cannot load alone."""
    config = AutoConfig.from_pretrained(path)
    encoder_only = ENCODER_ONLY_CLASSES.get(config.model_type)
    if pooling == "first_decoder":
        if not config.is_encoder_decoder:
            raise ValueError(
                f"model.pooling 'first_decoder' needs an encoder-decoder model such as T5; {path} is a "
                f"{config.model_type} without a decoder: use cls or mean"
            )
        return AutoModel
    if encoder_only:  # a saved encoder-only T5 says is_encoder_decoder: false, a hub T5 true
        return getattr(transformers, encoder_only)
    if config.is_encoder_decoder:
        raise ValueError(
            f"model.pooling {pooling!r} on {path}: dr_core loads the encoder alone only for "
            f"{', '.join(ENCODER_ONLY_CLASSES)}, not {config.model_type}; use first_decoder"
        )
    return AutoModel


def decoder_start_id(config: PretrainedConfig) -> int:
    """The token the decoder starts from: `decoder_start_token_id`, else the pad token (T5's convention)."""
    start = getattr(config, "decoder_start_token_id", None)
    start = config.pad_token_id if start is None else start
    if start is None:
        raise ValueError(f"model.pooling 'first_decoder': the {config.model_type} config names no decoder start token")
    return start


def pool(hidden: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """[B, L, H] token states -> [B, H]: the first token (cls; first_decoder's one decoder state) or the
    mask-weighted mean."""
    if how in ("cls", "first_decoder"):
        return hidden[:, 0]
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


class BiEncoder(nn.Module):
    """Query and passage towers (shared unless `spec.untied`), pooled, optionally projected and normalised."""

    def __init__(self, query_model: nn.Module, passage_model: nn.Module | None, spec: EncoderSpec) -> None:
        super().__init__()
        self.spec = spec
        self.query_model = query_model
        self.passage_model = passage_model  # None when tied
        for tower in self.towers():
            _freeze_pooler(tower)
        hidden = query_model.config.hidden_size
        self.projection = nn.Linear(hidden, spec.projection_dim) if spec.projection_dim else None

    def towers(self) -> list[nn.Module]:
        """The query tower, and the passage tower when untied."""
        return [t for t in (self.query_model, self.passage_model) if t is not None]

    def gradient_checkpointing_enable(self) -> None:
        """Recompute transformer activations in the backward pass (less memory, ~30% more compute)."""
        for tower in self.towers():
            tower.activation_checkpointing_enable({"use_reentrant": False})

    def set_attention_dropout(self, p: float) -> None:
        """Dropout `p` on the attention probabilities of every tower's self-attention layers
        (`train.attention_dropout`), in this process only: the saved config keeps the model's own value. Above 0,
        torch's CPU attention cannot use its fused kernel and draws a mask number per attention weight."""
        for tower in self.towers():
            found = [
                m.dropout
                for m in tower.modules()
                if type(m).__name__.endswith("SelfAttention") and isinstance(getattr(m, "dropout", None), nn.Dropout)
            ]
            if not hasattr(tower.config, "attention_probs_dropout_prob") or not found:
                kind = getattr(tower.config, "model_type", type(tower).__name__)
                raise ValueError(
                    f"train.attention_dropout: this {kind} model has no BERT-style attention dropout "
                    "(attention_probs_dropout_prob); leave it null"
                )
            for dropout in found:
                dropout.p = p

    def compile(self, *args: Any, **kwargs: Any) -> None:
        """torch.compile the towers in place: `encode`, which embedding calls directly, runs them compiled too."""
        for tower in self.towers():
            tower.compile(*args, **kwargs)

    @classmethod
    def from_base(cls, name: str, spec: EncoderSpec) -> BiEncoder:
        """Start from a pretrained transformer (hub name, local path or `pkg:` path).

        Weights the checkpoint lacks (a pooler, a projection) are initialised from a fixed seed, so the same
        base gives the same round-0 model every time.
        """
        path = resolve_model_path(name)
        model_class = tower_class(path, spec.pooling)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            q = model_class.from_pretrained(path)
            p = model_class.from_pretrained(path) if spec.untied else None
            return cls(q, p, spec)

    @classmethod
    def load(cls, path: str | Path) -> BiEncoder:
        """Load a directory written by `save`."""
        path = Path(path)
        spec = EncoderSpec(**json.loads((path / ENCODER_FILE).read_text()))
        if spec.untied:
            model_class = tower_class(str(path / "query_model"), spec.pooling)
            towers = (
                model_class.from_pretrained(path / "query_model"),
                model_class.from_pretrained(path / "passage_model"),
            )
            model = cls(*towers, spec)
        else:
            model = cls(tower_class(str(path), spec.pooling).from_pretrained(path), None, spec)
        if model.projection is not None:
            weights = load_file(path / DENSE_DIR / "model.safetensors")
            model.projection.load_state_dict({k.removeprefix("linear."): v for k, v in weights.items()})
        return model

    def add_lora(self, settings: LoraSettings) -> None:
        """Train low-rank adapters (peft) instead of the towers' weights; the projection stays trainable."""
        self.query_model = add_lora(self.query_model, settings)
        if self.passage_model is not None:
            self.passage_model = add_lora(self.passage_model, settings)
        for tower in self.towers():
            _freeze_pooler(tower)  # adapters a "dense" target put in the unused pooler stay frozen too

    def save(self, path: str | Path, tokenizer: PreTrainedTokenizerBase) -> None:
        """Write weights, tokenizer, `dr_encoder.json` and sentence-transformers module files. LoRA adapters are
        merged into the towers first (in place), so that the folder holds a plain transformer."""
        self.query_model = merged(self.query_model)
        self.passage_model = merged(self.passage_model) if self.passage_model is not None else None
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        if self.passage_model is None:
            self.query_model.save_pretrained(path)
            if self.spec.pooling != "first_decoder":  # sentence-transformers cannot run the decoder
                _write_sentence_transformers_files(path, self.spec, self.query_model.config.hidden_size)
        else:
            self.query_model.save_pretrained(path / "query_model")
            self.passage_model.save_pretrained(path / "passage_model")
            tokenizer.save_pretrained(path / "query_model")
            tokenizer.save_pretrained(path / "passage_model")
        tokenizer.save_pretrained(path)
        if self.projection is not None:
            _write_dense(path / DENSE_DIR, self.projection)
        (path / ENCODER_FILE).write_text(json.dumps(asdict(self.spec), indent=2) + "\n")

    def forward(
        self, queries: dict[str, torch.Tensor], passages: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(query embeddings, passage embeddings) for two padded batches; the training entry point (DDP)."""
        return self.encode(**queries, is_query=True), self.encode(**passages, is_query=False)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, is_query: bool) -> torch.Tensor:
        """Embeddings [B, D] for a padded batch of queries or passages."""
        tower = self.query_model if is_query or self.passage_model is None else self.passage_model
        if self.spec.pooling == "first_decoder":  # [B, 1, H]: the decoder's state after its start token
            start = torch.full_like(input_ids[:, :1], decoder_start_id(tower.config))
            out = tower(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=start, use_cache=False)
        else:
            out = tower(input_ids=input_ids, attention_mask=attention_mask)
        emb = pool(out.last_hidden_state, attention_mask, self.spec.pooling)
        if self.projection is not None:
            emb = self.projection(emb)
        if self.spec.similarity == "cosine":
            emb = F.normalize(emb, dim=-1)
        return emb


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    """The fast tokenizer of a base model or a saved bi-encoder."""
    tok = AutoTokenizer.from_pretrained(resolve_model_path(str(path)), use_fast=True)
    if not tok.is_fast:
        raise ValueError(f"{path}: a fast tokenizer is required (tokenizer.json)")
    return tok


def _freeze_pooler(tower: nn.Module) -> None:
    """BERT-style poolers are never used by our pooling: freezing them keeps DDP from waiting on their grads."""
    pooler = getattr(tower, "pooler", None)
    if isinstance(pooler, nn.Module):
        pooler.requires_grad_(False)


def _write_dense(folder: Path, projection: nn.Linear) -> None:
    """The projection as a sentence-transformers Dense module (identity activation)."""
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "in_features": projection.in_features,
        "out_features": projection.out_features,
        "bias": projection.bias is not None,
        "activation_function": "torch.nn.modules.linear.Identity",
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    weights = {f"linear.{k}": v.detach().cpu().contiguous() for k, v in projection.state_dict().items()}
    save_file(weights, folder / "model.safetensors")


def _write_sentence_transformers_files(path: Path, spec: EncoderSpec, hidden: int) -> None:
    """modules.json, sentence_bert_config.json, 1_Pooling (and the projection's Dense, Normalize) for
    SentenceTransformer(path)."""
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}]
    (path / "1_Pooling").mkdir(exist_ok=True)
    pooling = {
        "word_embedding_dimension": hidden,
        "pooling_mode_cls_token": spec.pooling == "cls",
        "pooling_mode_mean_tokens": spec.pooling == "mean",
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
    }
    (path / "1_Pooling" / "config.json").write_text(json.dumps(pooling, indent=2) + "\n")
    modules.append({"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"})
    if spec.projection_dim:
        modules.append({"idx": 2, "name": "2", "path": DENSE_DIR, "type": "sentence_transformers.models.Dense"})
    if spec.similarity == "cosine":
        i = len(modules)
        folder = f"{i}_Normalize"
        modules.append({"idx": i, "name": str(i), "path": folder, "type": "sentence_transformers.models.Normalize"})
        (path / folder).mkdir(exist_ok=True)
    (path / "modules.json").write_text(json.dumps(modules, indent=2) + "\n")
    st_config = {"max_seq_length": spec.p_max_len, "do_lower_case": False}
    (path / "sentence_bert_config.json").write_text(json.dumps(st_config, indent=2) + "\n")
    sim = "cosine" if spec.similarity == "cosine" else "dot"
    st = {"similarity_fn_name": sim, "prompts": st_prompts(spec), "default_prompt_name": None}
    (path / "config_sentence_transformers.json").write_text(json.dumps(st, indent=2) + "\n")


def template_prefix(template: str) -> str | None:
    """The literal before `{text}` when the template is nothing but that prefix and `{text}` (a
    sentence-transformers prompt); None otherwise."""
    parts = list(Formatter().parse(template))
    if len(parts) == 1 and parts[0][1:] == ("text", "", None):
        return parts[0][0]
    return None


def st_prompts(spec: EncoderSpec) -> dict[str, str]:
    """sentence-transformers `prompts` that reproduce the templates (non-empty ones only).

    The query prompt exists when `query_template` is a prefix and `{text}`; the document prompt when the
    untitled passage template is, and the titled one starts with the same prefix (the model card says how to
    build the rest of a titled passage)."""
    prompts = {}
    query = template_prefix(spec.query_template)
    if query:
        prompts["query"] = query
    document = template_prefix(spec.passage_template_untitled)
    if document and spec.passage_template.startswith(document.replace("{", "{{").replace("}", "}}")):
        prompts["document"] = document
    return prompts
