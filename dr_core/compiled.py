"""torch.compile of a model in place, set so that it computes what the uncompiled model computes."""

from __future__ import annotations

import torch


def compile_in_place(model: torch.nn.Module) -> None:
    """torch.compile `model` in place (its state_dict keys unchanged). Inductor's random operators fall back to
    torch's own, so dropout draws from the generator, in the order, that uncompiled training does: the losses
    agree within float tolerance and a resumed run restores that generator as before. Compiled for dynamic shapes
    at once: batches are padded to their longest text, and each new length would otherwise recompile."""
    import torch._inductor.config as inductor

    inductor.fallback_random = True
    model.compile(dynamic=True)
