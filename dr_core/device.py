"""Device and precision choices: fp32 on CPU, mixed precision only on CUDA."""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager

import torch

PRECISIONS = ("auto", "fp32", "fp16", "bf16")


def pick_device() -> torch.device:
    """The local CUDA device when there is one (honouring LOCAL_RANK), else the CPU."""
    if torch.cuda.is_available():
        import os

        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' means fp16 on CUDA (bf16 when supported) and fp32 on CPU; half precision on CPU is refused."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    if device.type != "cuda":
        if precision in ("fp16", "bf16"):
            raise ValueError(f"precision {precision!r} needs CUDA; on CPU use fp32 (bf16 is ~100x slower here)")
        return "fp32"
    if precision == "auto":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return precision


def autocast(precision: str, device: torch.device) -> AbstractContextManager:
    """Autocast context for the chosen precision (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)
