"""LoRA through `peft` (the `train.lora` config keys): low-rank adapters on a bi-encoder's transformer towers,
merged into the weights on save so that plain `transformers` and `sentence-transformers` load the result."""

from __future__ import annotations

from dataclasses import dataclass, fields

from torch import nn

KEY = "train.lora"


@dataclass(frozen=True)
class LoraSettings:
    """`train.lora`: rank, scaling alpha, dropout on the adapter input, and the module names adapted
    (None: peft's default for the architecture, query and value for BERT)."""

    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.1
    target_modules: tuple[str, ...] | None = None

    @classmethod
    def from_config(cls, config: dict) -> LoraSettings:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(f"{KEY}: unknown keys {unknown} (known: {sorted(known)})")
        targets = config.get("target_modules")
        settings = cls(**{**config, "target_modules": tuple(targets) if targets else None})
        if settings.r < 1 or settings.alpha <= 0 or not 0 <= settings.dropout < 1:
            raise ValueError(f"{KEY}: r >= 1, alpha > 0 and 0 <= dropout < 1 are required, not {config}")
        return settings


def check_targets(tower: nn.Module, targets: tuple[str, ...]) -> None:
    """Every target names a Linear layer (peft matches module-name suffixes); else a ValueError naming the key."""
    linear = {name for name, m in tower.named_modules() if isinstance(m, nn.Linear)}
    for target in targets:
        if not any(name == target or name.endswith("." + target) for name in linear):
            choices = sorted({name.rsplit(".", 1)[-1] for name in linear})
            raise ValueError(f"{KEY}.target_modules: no Linear layer {target!r} in the model; it has {choices}")


def add_lora(tower: nn.Module, settings: LoraSettings) -> nn.Module:
    """`tower` wrapped by peft with trainable adapters; its own weights frozen."""
    from peft import LoraConfig, get_peft_model

    if settings.target_modules:
        check_targets(tower, settings.target_modules)
    config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=list(settings.target_modules) if settings.target_modules else None,
    )
    try:
        return get_peft_model(tower, config)
    except ValueError as e:  # no default targets known for this architecture
        raise ValueError(f"{KEY}.target_modules: {e}") from None


def merged(tower: nn.Module) -> nn.Module:
    """The plain transformer with the adapters folded into its weights (the tower itself when it has none)."""
    from peft import PeftModel

    return tower.merge_and_unload() if isinstance(tower, PeftModel) else tower


def trainable_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
