"""OpenMatch's T5 weight scaling (`scripts/scale_t5_weights.py`), recommended before training T5 in fp16.

Dividing the shared embedding and every residual branch's output projection by 100 (attention `o` by 100, the
ReLU feed-forward's `wi` and `wo` by 10 each) shrinks T5's whole residual stream by 100. Each sublayer and each
stack's output starts with an RMS norm, which undoes the scale, so the model computes the same function (up to
the norm's epsilon) while its activations stay far from fp16's limit.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from dr_core.atomic import atomic_path
from dr_core.model import load_tokenizer, resolve_model_path

KEY = "model.scale_t5_weights"


def t5_scale_divisors(num_layers: int, num_decoder_layers: int) -> dict[str, float]:
    """Parameter name -> divisor, as OpenMatch's script (which takes one layer count for both stacks)."""
    divisors = {"shared.weight": 100.0}
    for i in range(num_layers):
        divisors[f"encoder.block.{i}.layer.0.SelfAttention.o.weight"] = 100.0
        divisors[f"encoder.block.{i}.layer.1.DenseReluDense.wi.weight"] = 10.0
        divisors[f"encoder.block.{i}.layer.1.DenseReluDense.wo.weight"] = 10.0
    for i in range(num_decoder_layers):
        divisors[f"decoder.block.{i}.layer.0.SelfAttention.o.weight"] = 100.0
        divisors[f"decoder.block.{i}.layer.1.EncDecAttention.o.weight"] = 100.0
        divisors[f"decoder.block.{i}.layer.2.DenseReluDense.wi.weight"] = 10.0
        divisors[f"decoder.block.{i}.layer.2.DenseReluDense.wo.weight"] = 10.0
    return divisors


def scaled_t5_weights(
    state: Mapping[str, torch.Tensor], num_layers: int, num_decoder_layers: int
) -> dict[str, torch.Tensor]:
    """The entries of a T5 state dict that the scaling changes, divided (new tensors; `state` is untouched)."""
    divisors = t5_scale_divisors(num_layers, num_decoder_layers)
    missing = [name for name in divisors if name not in state]
    if missing:
        raise ValueError(
            f"{KEY}: the model has no {missing[0]} ({len(missing)} weights missing): OpenMatch's scaling is for "
            "T5 with a ReLU feed-forward (t5-small/base/large), with its decoder"
        )
    return {name: state[name] / divisor for name, divisor in divisors.items()}


def scale_t5_model(base: str, out: str | Path) -> None:
    """Write `base` (a T5 hub name or path) with scaled weights, and its tokenizer, to the folder `out`."""
    from transformers import AutoConfig, T5Model

    path = resolve_model_path(base)
    config = AutoConfig.from_pretrained(path)
    if config.model_type != "t5":
        raise ValueError(f"{KEY}: {base} is a {config.model_type}, not a T5")
    if config.feed_forward_proj != "relu":
        raise ValueError(
            f"{KEY}: {base} is a T5 with a {config.feed_forward_proj} feed-forward (T5 v1.1, flan-t5); OpenMatch's "
            "scaling keeps the function only for the original T5's ReLU feed-forward (t5-small/base/large)"
        )
    model = T5Model.from_pretrained(path)
    scaled = scaled_t5_weights(model.state_dict(), config.num_layers, config.num_decoder_layers)
    model.load_state_dict(scaled, strict=False)  # only these: the tied embedding aliases keep sharing shared.weight
    with atomic_path(out, is_dir=True) as tmp:
        model.save_pretrained(tmp)
        load_tokenizer(path).save_pretrained(tmp)
