"""Tokenize corpus and queries to Parquet (`id`, `input_ids` without special tokens), in bounded-memory batches."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from dr_core.atomic import atomic_path
from dr_core.settings import required, setting
from dr_core.templates import PLAIN, check_template, format_passages, format_queries

if TYPE_CHECKING:  # transformers (and torch, via batching) load only when tokenizing: the Snakefile imports this
    from transformers import PreTrainedTokenizerBase

SCHEMA = pa.schema([("id", pa.string()), ("input_ids", pa.list_(pa.int32()))])


def _encode(tokenizer: PreTrainedTokenizerBase, texts: list[str], max_len: int) -> pa.Array:
    """Token ids without special tokens, truncated so that the special tokens still fit in `max_len`."""
    from dr_core.batching import special_tokens

    prefix, suffix = special_tokens(tokenizer)
    budget = max_len - len(prefix) - len(suffix)
    enc = tokenizer(texts, add_special_tokens=False, truncation=True, max_length=budget)["input_ids"]
    return pa.array(enc, type=pa.list_(pa.int32()))


def _parquet_reader(path: str | Path) -> pq.ParquetFile:
    """A reader that holds only what it is reading: with pre_buffer (pyarrow's default) every column chunk read
    so far is kept until the reader is done, so memory grew with the corpus, to 4 GB at MS MARCO's 8.8M
    passages (benchmarks/README.md)."""
    return pq.ParquetFile(path, pre_buffer=False)


@dataclass(frozen=True)
class TokenizeSettings:
    """How a corpus or queries table is tokenized: its texts' length and templates (the recipe's model.* keys)."""

    max_len: int = required("tokens of a text, special tokens included (model.p_max_len or model.q_max_len)")
    template: str = setting("", "query or passage template ('' = the text as it is)")
    untitled_template: str = setting(PLAIN, "passages without a title")
    batch_size: int = setting(10_000, "rows tokenized (and held) at a time")


def tokenize_table(
    src: str | Path,
    dest: str | Path,
    tokenizer: PreTrainedTokenizerBase,
    id_column: str,
    settings: TokenizeSettings,
) -> int:
    """Tokenize a corpus (id, title, text) or queries (qid, text) Parquet file, its ids read from `id_column`, the
    texts built by `settings.template` (passages: `format_passages`; queries: `format_queries`; '': the text as it
    is). Returns rows."""
    template, untitled, max_len = settings.template, settings.untitled_template, settings.max_len
    reader = _parquet_reader(src)
    if template and "title" in reader.schema_arrow.names:
        check_template(template, {"title", "text"}, "model.passage_template")
        check_template(untitled, {"text"}, "model.passage_template_untitled")
    elif template:
        check_template(template, {"text"}, "model.query_template")
    n = 0
    with atomic_path(dest) as tmp, pq.ParquetWriter(tmp, SCHEMA) as writer:
        bar = tqdm(total=reader.metadata.num_rows, desc=f"tokenize {Path(src).name}", unit="row")
        for batch in reader.iter_batches(batch_size=settings.batch_size):
            cols = batch.to_pydict()
            texts = _texts(cols, template, untitled)
            ids = pa.array(cols[id_column], type=pa.string())
            writer.write_batch(pa.record_batch([ids, _encode(tokenizer, texts, max_len)], schema=SCHEMA))
            n += batch.num_rows
            bar.update(batch.num_rows)
        bar.close()
    return n


def _texts(cols: dict[str, list], template: str, untitled: str) -> list[str]:
    if not template:
        return cols["text"]
    if "title" in cols:
        return format_passages(cols["title"], cols["text"], template, untitled)
    return format_queries(cols["text"], template)


def read_rows(path: str | Path, start: int, end: int) -> pa.Table:
    """Rows [start, end) of a Parquet file, reading only the row groups that hold them."""
    reader = _parquet_reader(path)
    groups, first, at = [], 0, 0  # overlapping row groups, the first row of the first of them, rows passed
    for g in range(reader.metadata.num_row_groups):
        n = reader.metadata.row_group(g).num_rows
        if at < end and at + n > start:
            if not groups:
                first = at
            groups.append(g)
        at += n
    table = reader.read_row_groups(groups) if groups else reader.schema_arrow.empty_table()
    return table.slice(start - first, max(end - start, 0))


class TokenStore:
    """Random access to pre-tokenized rows by id (offsets into one flat int32 array); `rows=(start, end)`
    loads only that range (a corpus shard) rather than the whole file."""

    def __init__(self, path: str | Path, rows: tuple[int, int] | None = None) -> None:
        table = pq.read_table(path) if rows is None else read_rows(path, *rows)
        column = table.column("input_ids").combine_chunks()
        self.ids: list[str] = table.column("id").to_pylist()
        self.row = {doc_id: i for i, doc_id in enumerate(self.ids)}
        self._offsets = column.offsets.to_numpy()
        self._values = column.values.to_numpy()
        self.lengths = np.diff(self._offsets)

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, doc_id: str) -> bool:
        return doc_id in self.row

    def by_row(self, i: int) -> np.ndarray:
        return self._values[self._offsets[i] : self._offsets[i + 1]]

    def __getitem__(self, doc_id: str) -> np.ndarray:
        return self.by_row(self.row[doc_id])
