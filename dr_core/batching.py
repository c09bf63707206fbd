"""Turn pre-tokenized rows (ids without special tokens) into padded model inputs."""

from __future__ import annotations

from typing import Sequence

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
        lengths = [min(len(r), self.budget) + len(self.prefix) + len(self.suffix) for r in rows]
        width = max(lengths)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, (row, n) in enumerate(zip(rows, lengths)):
            ids[i, :n] = torch.as_tensor(self.prefix + [int(x) for x in row[: self.budget]] + self.suffix)
            mask[i, :n] = 1
        return {"input_ids": ids, "attention_mask": mask}
