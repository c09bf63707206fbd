"""Turn pre-tokenized rows (ids without special tokens) into padded model inputs."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase


def special_tokens(tokenizer: PreTrainedTokenizerBase) -> tuple[list[int], list[int]]:
    """The ids the tokenizer puts before and after a single text (e.g. [CLS] and [SEP] for BERT)."""
    content = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a", add_special_tokens=True)["input_ids"]
    for i in range(len(full) - len(content) + 1):
        if full[i : i + len(content)] == content:
            return full[:i], full[i + len(content) :]
    raise ValueError(f"cannot locate the text among the special tokens of {type(tokenizer).__name__}")


class Padder:
    """Adds the tokenizer's special tokens, truncates to `max_len`, pads to the longest row of the batch."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, max_len: int) -> None:
        self.prefix, self.suffix = special_tokens(tokenizer)
        self.max_len = max_len
        self.budget = max_len - len(self.prefix) - len(self.suffix)
        if self.budget < 1:
            raise ValueError(f"max length {max_len} leaves no room for text")
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def __call__(self, rows: Sequence[np.ndarray]) -> dict[str, torch.Tensor]:
        head, tail = len(self.prefix), len(self.suffix)
        bodies = [row[: self.budget] for row in rows]
        width = max(len(b) for b in bodies) + head + tail
        ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        ids[:, :head] = self.prefix
        for i, body in enumerate(bodies):
            end = head + len(body)
            ids[i, head:end] = body
            ids[i, end : end + tail] = self.suffix
            mask[i, : end + tail] = 1
        return {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
