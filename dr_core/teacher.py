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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dr_core.atomic import atomic_path
from dr_core.cross_encoder import cross_encoder_scores, is_cross_encoder, require_cross_encoder
from dr_core.device import pick_device
from dr_core.model import ENCODER_FILE, BiEncoder, load_tokenizer, resolve_model_path
from dr_core.settings import setting
from dr_core.templates import PASSAGE_TEMPLATE

log = logging.getLogger(__name__)

KINDS = ("auto", "cross", "bi")


@dataclass(frozen=True)
class TeacherSettings:
    """How the teacher scores the candidates (the recipe's distill.kind, batch_size, q_max_len, max_len and the
    passage template model.passage_template)."""

    kind: str = setting("auto", "auto: cross for *ForSequenceClassification, else bi", list(KINDS))
    template: str = setting(PASSAGE_TEMPLATE, "passage text from its title and text")
    batch_size: int = setting(32, "texts (bi) or pairs (cross) per forward pass")
    q_max_len: int = setting(32, "bi-encoder query length")
    max_len: int = setting(256, "passage (bi) or pair (cross) length")


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
