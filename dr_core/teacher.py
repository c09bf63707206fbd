"""Teacher scores for distillation: a cross-encoder or a bi-encoder scores each train query's candidates.

Coverage: every judged positive and every passage of the negatives file is scored for each train query, so
any group the trainer can sample has a teacher score. The trainer draws negatives only from these lists,
except for a query with no negatives at all, which would get random corpus passages: under distillation
such queries (and passages missing from a score file, e.g. a published one) are left out, with a warning
(`dr_core.train_data.keep_scored`).

Scores are written as Parquet (qid, pid, score). The trainer also reads sentence-transformers' published
cross-encoder pickle (`cross-encoder-ms-marco-MiniLM-L-6-v2-scores.pkl.gz`) via `dr_core.data.msmarco.toolkits`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from dr_core.atomic import atomic_path
from dr_core.device import autocast, pick_device, resolve_precision
from dr_core.model import ENCODER_FILE, BiEncoder, load_tokenizer, resolve_model_path
from dr_core.tokenization import format_passages

log = logging.getLogger(__name__)

KINDS = ("auto", "cross", "bi")


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


def teacher_kind(model: str, kind: str = "auto", key: str = "distill.teacher") -> str:
    """'cross' for a sequence-classification checkpoint, else 'bi' (unless `kind` says which; 'cross' is
    checked, with an error naming the config `key`)."""
    if kind not in KINDS:
        raise ValueError(f"teacher kind must be one of {KINDS}, not {kind!r}")
    if kind == "cross":
        require_cross_encoder(model, key)
    if kind != "auto":
        return kind
    return "cross" if is_cross_encoder(model) else "bi"


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


def bi_encoder_embeddings(model: str, texts: list[str], is_query: bool, batch_size: int, max_len: int) -> np.ndarray:
    """Embeddings of raw texts: our BiEncoder for a dr_core model folder, else sentence-transformers."""
    path = resolve_model_path(model)
    if (Path(path) / ENCODER_FILE).exists():
        from dr_core.batching import Padder
        from dr_core.encode import embed

        tok = load_tokenizer(path)
        net = BiEncoder.load(path).to(pick_device())
        rows = [np.asarray(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"]]
        return embed(net, Padder(tok, max_len), rows, is_query, batch_size)
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(path, device=str(pick_device()))
    st.max_seq_length = max_len
    return st.encode(texts, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=True)


def score_candidates(
    model: str,
    groups: dict[str, list[str]],
    query_text: dict[str, str],
    passage_text: dict[str, str],
    kind: str = "auto",
    batch_size: int = 32,
    q_max_len: int = 32,
    max_len: int = 256,
) -> pd.DataFrame:
    """Teacher scores (qid, pid, score) of every candidate whose query and passage texts are known."""
    pairs = [(q, p) for q, pids in groups.items() if q in query_text for p in pids if p in passage_text]
    if not pairs:
        raise ValueError("no (query, passage) candidate has both texts")
    if teacher_kind(model, kind) == "cross":
        scores = cross_encoder_scores(model, [(query_text[q], passage_text[p]) for q, p in pairs], batch_size, max_len)
    else:
        qids = sorted({q for q, _ in pairs})
        pids = sorted({p for _, p in pairs})
        q_emb = bi_encoder_embeddings(model, [query_text[q] for q in qids], True, batch_size, q_max_len)
        p_emb = bi_encoder_embeddings(model, [passage_text[p] for p in pids], False, batch_size, max_len)
        q_row, p_row = {q: i for i, q in enumerate(qids)}, {p: i for i, p in enumerate(pids)}
        qi = np.array([q_row[q] for q, _ in pairs])
        pi = np.array([p_row[p] for _, p in pairs])
        scores = np.einsum("nd,nd->n", q_emb[qi], p_emb[pi]).astype(np.float32)
    return pd.DataFrame({"qid": [q for q, _ in pairs], "pid": [p for _, p in pairs], "score": scores})


def write_teacher_scores(scores: pd.DataFrame, dest: str | Path, meta: dict) -> None:
    """Parquet (qid, pid, score), atomically, with `meta` (teacher, kind, ...) in the file's metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(scores, preserve_index=False)
    table = table.replace_schema_metadata({"dr_core": json.dumps(meta)})
    with atomic_path(dest) as tmp:
        pq.write_table(table, tmp)


def read_teacher_scores(path: str | Path, qids: set[str] | None = None) -> dict[str, dict[str, float]]:
    """qid -> {pid: score} from our Parquet file or a sentence-transformers `.pkl`/`.pkl.gz` score file."""
    path = Path(path)
    if path.name.endswith((".pkl", ".pkl.gz")):
        from dr_core.data.msmarco.toolkits import read_ce_scores

        return read_ce_scores(path, qids)
    df = pd.read_parquet(path, columns=["qid", "pid", "score"])
    if qids is not None:
        df = df[df["qid"].isin(qids)]
    out: dict[str, dict[str, float]] = {}
    for qid, pid, score in zip(df["qid"], df["pid"], df["score"].astype(float)):
        out.setdefault(qid, {})[pid] = score
    return out
