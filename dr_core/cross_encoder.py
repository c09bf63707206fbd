"""Cross-encoders: scoring (query, passage) pairs, for the teacher (`dr_core.teacher`) and the reranker
(`dr_core.reranker`); loading and saving one; and the pairs both score (a query's candidates, their texts).

A cross-encoder is an `AutoModelForSequenceClassification` checkpoint. It reads (query, passage) pairs, the
passage formatted by `model.template`, cut to `max_len` tokens by truncating the passage only; its score is the
raw logit (log P(last class) for several labels). A saved one tells sentence-transformers so (identity activation
instead of the sigmoid `CrossEncoder.predict` applies by default to one-label models), so `CrossEncoder(path)` gives
the same scores as `cross_encoder_scores` whenever the query fills at most half of `max_len` (CrossEncoder
truncates 'longest_first', which then cuts the passage only, as we do).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from dr_core.device import autocast, pick_device, resolve_precision
from dr_core.model import ENCODER_FILE, resolve_model_path
from dr_core.templates import format_passages

IDENTITY = "torch.nn.modules.linear.Identity"


def candidates(qrels: pd.DataFrame, negatives: dict[str, list[str]]) -> dict[str, list[str]]:
    """qid -> distinct pids to score: the judged positives, then the file's negatives, in order."""
    out: dict[str, list[str]] = {}
    for qid, docids in qrels[qrels["rel"] > 0].groupby("qid", sort=True)["docid"]:
        out[qid] = list(dict.fromkeys([*docids, *negatives.get(qid, [])]))
    return out


def load_texts(
    queries: str | Path, corpus: str | Path, groups: dict[str, list[str]], template: str
) -> tuple[dict[str, str], dict[str, str]]:
    """Query texts and formatted passage texts (title + text by `template`) of the candidates."""
    q = pd.read_parquet(queries, columns=["qid", "text"])
    q = q[q["qid"].isin(groups.keys())]
    wanted = {pid for pids in groups.values() for pid in pids}
    c = pd.read_parquet(corpus, columns=["id", "title", "text"])
    c = c[c["id"].isin(wanted)]
    passages = format_passages(c["title"].tolist(), c["text"].tolist(), template)
    return dict(zip(q["qid"], q["text"])), dict(zip(c["id"], passages))


def is_cross_encoder(model: str) -> bool:
    """Whether `model` is a sequence-classification checkpoint (a *ForSequenceClassification architecture)."""
    path = Path(resolve_model_path(model))
    if (path / ENCODER_FILE).exists():
        return False
    from transformers import AutoConfig

    archs = AutoConfig.from_pretrained(str(path)).architectures or []
    return any(a.endswith("ForSequenceClassification") for a in archs)


def require_cross_encoder(model: str, key: str) -> None:
    """A clear error naming the config `key` unless `model` is a cross-encoder."""
    try:
        cross = is_cross_encoder(model)
    except OSError as e:
        raise ValueError(f"config {key}: cannot read the model {model!r} ({e})") from None
    if not cross:
        raise ValueError(
            f"config {key}: {model!r} is not a cross-encoder (its config.json names no *ForSequenceClassification "
            "architecture)"
        )


def cross_encoder_scores(model: str, pairs: list[tuple[str, str]], batch_size: int, max_len: int) -> np.ndarray:
    """Relevance logits of (query, passage) pairs: the single logit, or log P(last class) for several labels."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = resolve_model_path(model)
    device = pick_device()
    precision = resolve_precision("auto", device)
    tok = AutoTokenizer.from_pretrained(path)
    net = AutoModelForSequenceClassification.from_pretrained(path).to(device).eval()
    order = np.argsort([-len(q) - len(p) for q, p in pairs], kind="stable")
    out = np.empty(len(pairs), dtype=np.float32)
    for start in tqdm(range(0, len(pairs), batch_size), desc="cross-encoder", unit="batch"):
        idx = order[start : start + batch_size]
        batch = tok(
            [pairs[i][0] for i in idx],
            [pairs[i][1] for i in idx],
            truncation="only_second",
            max_length=max_len,
            padding=True,
            return_tensors="pt",
        ).to(device)
        with torch.inference_mode(), autocast(precision, device):
            logits = net(**batch).logits.float()
        score = logits[:, 0] if logits.shape[1] == 1 else logits.log_softmax(-1)[:, -1]
        out[idx] = score.cpu().numpy()
    return out


def load_cross_encoder(name: str):
    """(model, tokenizer): a one-logit sequence classifier from a hub name, a path or a `pkg:` path."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = resolve_model_path(name)
    return AutoModelForSequenceClassification.from_pretrained(path, num_labels=1), AutoTokenizer.from_pretrained(path)


def save_cross_encoder(model, tokenizer, folder: str | Path, max_len: int) -> None:
    """`save_pretrained` model and tokenizer that `sentence_transformers.CrossEncoder` loads: its
    `predict` returns the raw logit (identity activation) and truncates pairs at `max_len`."""
    model.config.sentence_transformers = {"activation_fn": IDENTITY}
    tokenizer.model_max_length = max_len
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
