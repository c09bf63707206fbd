"""Weight-space ensembling (WiSE-FT, Wortsman et al. 2022): a trained bi-encoder interpolated with its base.

Every floating-point weight of the merged model is `(1 - alpha) * base + alpha * tuned`, so alpha 0 is the base
(round 0) and alpha 1 the trained round. The two must be the same architecture: the same `EncoderSpec` and the
same parameter names and shapes. The result is saved as a trained round is (`BiEncoder.save`, the tuned model's
tokenizer), so `BiEncoder.load`, plain `transformers` and `sentence-transformers` load it alike.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path

import torch

from dr_core.atomic import atomic_path, write_provenance
from dr_core.model import BiEncoder, load_tokenizer

KEY = "merge.alpha"


def check_alpha(alpha: float) -> float:
    """alpha itself when it lies in [0, 1]; else a ValueError naming `merge.alpha`."""
    try:
        value = float(alpha)
    except (TypeError, ValueError):
        value = math.nan
    if not 0.0 <= value <= 1.0:  # NaN fails too
        raise ValueError(f"{KEY} must lie in [0, 1] (0: the base model, 1: the trained one), not {alpha!r}")
    return value


def first_difference(base: Mapping[str, torch.Tensor], tuned: Mapping[str, torch.Tensor]) -> str | None:
    """How two state dicts first differ in names or shapes (base's order, then tuned's extra names); None if not."""
    for key, weight in base.items():
        if key not in tuned:
            return f"{key!r} is only in the base model"
        if weight.shape != tuned[key].shape:
            return f"{key!r} has shape {tuple(weight.shape)} in the base model, {tuple(tuned[key].shape)} in the tuned"
    extra = next((key for key in tuned if key not in base), None)
    return None if extra is None else f"{extra!r} is only in the tuned model"


def interpolate_weights(
    base: Mapping[str, torch.Tensor], tuned: Mapping[str, torch.Tensor], alpha: float
) -> dict[str, torch.Tensor]:
    """New tensors `(1 - alpha) * base + alpha * tuned` for floating-point entries (in float32, cast back to the
    tuned entry's dtype); other entries (integer buffers) copied from `tuned`. The inputs are left untouched."""
    alpha = check_alpha(alpha)
    out = {}
    for key, t in tuned.items():
        if t.is_floating_point():
            mixed = (1.0 - alpha) * base[key].detach().float() + alpha * t.detach().float()
            out[key] = mixed.to(t.dtype)
        else:
            out[key] = t.detach().clone()
    return out


def merge_models(base: str | Path, tuned: str | Path, alpha: float, out: str | Path) -> None:
    """Write to the folder `out` the bi-encoder whose weights are `(1 - alpha) * base + alpha * tuned`.

    `base` and `tuned` are saved bi-encoders (round 0 and a trained round). The merged folder has the tuned model's
    spec and tokenizer, and `dr_meta.json` records alpha and both folders. A ValueError, before anything is written,
    for alpha outside [0, 1] (`merge.alpha`) or two models that differ in spec or in parameter names or shapes.
    """
    alpha = check_alpha(alpha)
    base_model, tuned_model = BiEncoder.load(base), BiEncoder.load(tuned)
    base_spec, tuned_spec = asdict(base_model.spec), asdict(tuned_model.spec)
    field = next((k for k in tuned_spec if base_spec[k] != tuned_spec[k]), None)
    if field is not None:
        raise ValueError(
            f"cannot merge {base} and {tuned}: their encoder specs differ at {field!r} "
            f"({base_spec[field]!r} vs {tuned_spec[field]!r})"
        )
    base_state, tuned_state = base_model.state_dict(), tuned_model.state_dict()
    difference = first_difference(base_state, tuned_state)
    if difference is not None:
        raise ValueError(f"cannot merge {base} and {tuned}: not the same architecture, {difference}")
    merged = interpolate_weights(base_state, tuned_state, alpha)
    del base_model, base_state
    # all new tensors first, then one load: tied weights (T5's shared embedding) are one storage in the state dict
    tuned_model.load_state_dict(merged, strict=True)
    tokenizer = load_tokenizer(tuned)
    with atomic_path(out, is_dir=True) as tmp:
        tuned_model.save(tmp, tokenizer)
        record = {"command": "merge-models", "base": str(base), "tuned": str(tuned), "alpha": alpha, "out": str(out)}
        write_provenance(tmp, record, "merge-models")
