"""Tevatron's datasets, read through Hugging Face `datasets`: query groups (`query_id`, `query`,
`positive_passages`, `negative_passages`, each passage `{docid, title, text}`) and corpora (`docid`, `title`,
`text`), from a Hub dataset (`owner/name[/split]`, as Tevatron's `--dataset_name`; split train when none is
given) or a data file (a local path or an `hf://datasets/...` URL; .jsonl, .json or .parquet, optionally .gz).

They become the workflow's tables: corpus.parquet, and per split its qrels (every positive, rel 1, or a
judgements file's), its queries and its negatives (`qid<TAB>pid,...`). Bad input is a DataError naming the
source and the row (1-based: a JSON-lines file's line when it has no blank lines); nothing is written then.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dr_core.atomic import atomic_path
from dr_core.data.formats import (
    CORPUS_SCHEMA,
    qrels_to_parquet,
    queries_table,
    write_merged_queries,
    write_negatives,
    write_parquet,
)
from dr_core.errors import DataError

if TYPE_CHECKING:  # `datasets` loads only when a source is read
    from datasets import Dataset

# Tevatron's MS MARCO datasets are loading-script repositories, which `datasets` >= 4 no longer runs; their data
# files hold the rows the scripts yield (a missing negative_passages is read as none, as the scripts do).
SCRIPT_DATASET_FILES = {
    "Tevatron/msmarco-passage": {"train": "train.jsonl.gz", "dev": "dev.jsonl.gz"},
    "Tevatron/msmarco-passage-corpus": {"train": "corpus.jsonl.gz"},
}
_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}
_HUB_NAME = re.compile(r"^[\w.-]+/[\w.-]+(/[\w.-]+)?$")
BATCH_ROWS = 50_000


def is_data_file(source: str) -> bool:
    """Whether `source` names a data file (.jsonl, .json, .parquet, optionally .gz) rather than a Hub dataset."""
    return Path(source.removesuffix(".gz")).suffix in _BUILDERS


def load_arguments(source: str) -> dict[str, Any]:
    """`datasets.load_dataset` arguments that read `source`: a data file through the json or parquet builder,
    or a Hub dataset's split (the data file of a script dataset in SCRIPT_DATASET_FILES)."""
    if is_data_file(source):
        if "://" not in source and not Path(source).is_file():
            raise FileNotFoundError(f"{source}: no such data file")
        return {"path": _BUILDERS[Path(source.removesuffix(".gz")).suffix], "data_files": source, "split": "train"}
    if not _HUB_NAME.match(source):
        raise ValueError(
            f"{source}: neither a data file (.jsonl, .json, .parquet, optionally .gz) nor a Hub dataset "
            "owner/name[/split]"
        )
    parts = source.split("/")
    repo, split = "/".join(parts[:2]), parts[2] if len(parts) == 3 else "train"
    if repo not in SCRIPT_DATASET_FILES:
        return {"path": repo, "split": split}
    files = SCRIPT_DATASET_FILES[repo]
    if split not in files:
        raise ValueError(f"{source}: {repo} has no split '{split}' (it has {', '.join(files)})")
    return {"path": "json", "data_files": f"hf://datasets/{repo}/{files[split]}", "split": "train"}


def load_rows(source: str, cache_dir: str | Path | None = None) -> Dataset:
    """The rows of `source` as a `datasets.Dataset` (cached in `cache_dir`, default `datasets`' own cache).
    JSON columns keep the types they are written in (no mixed-type columns re-encoded as JSON strings)."""
    import datasets

    args = load_arguments(source)
    if args["path"] == "json":
        args["on_mixed_types"] = None
    try:
        return datasets.load_dataset(**args, cache_dir=None if cache_dir is None else str(cache_dir))
    except datasets.exceptions.DatasetGenerationError as e:
        raise DataError(source, None, f"not readable as rows ({e.__cause__ or e})") from None


def _batches(rows: Dataset, source: str) -> Iterator[tuple[int, pa.Table]]:
    """(1-based number of its first row, batch as an Arrow table) over `rows`; no rows at all is an error."""
    if len(rows) == 0:
        raise DataError(source, None, "no rows")
    for i, batch in enumerate(rows.with_format("arrow").iter(batch_size=BATCH_ROWS)):
        yield 1 + i * BATCH_ROWS, batch.combine_chunks()


def _first(mask: pa.Array, first_row: int) -> int | None:
    """The row number of the first true (or null) entry of `mask`, or None."""
    index = pc.index(pc.fill_null(mask, True), True).as_py()
    return None if index < 0 else first_row + index


def _ids(table: pa.Table, name: str, source: str, first_row: int) -> pa.Array:
    """Column `name` as strings; a missing, null or empty value is an error at its row."""
    if name not in table.column_names:
        raise DataError(source, first_row, f"no '{name}'")
    try:
        values = pc.cast(table[name].chunk(0), pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise DataError(source, first_row, f"'{name}' is not a string or number") from None
    if (row := _first(pc.equal(values, ""), first_row)) is not None:
        raise DataError(source, row, f"no '{name}'")
    return values


def _passage_ids(table: pa.Table, field: str, source: str, first_row: int, required: bool) -> pa.ListArray:
    """The docids of each row's `field` passages (list<string>). A row whose list is missing or null has none,
    an error where `required` (as is an empty list); a passage without docid is an error at its row."""
    if field not in table.column_names:
        if required:
            raise DataError(source, first_row, f"no '{field}'")
        return pa.array([[]] * table.num_rows, pa.list_(pa.string()))
    column = table[field].chunk(0)
    if pa.types.is_null(column.type) and not required:
        return pa.array([[]] * table.num_rows, pa.list_(pa.string()))
    if not (pa.types.is_list(column.type) or pa.types.is_large_list(column.type)):
        raise DataError(source, first_row, f"'{field}' is not a list of passages")
    lengths = pc.fill_null(pc.list_value_length(column), 0)
    if required and (row := _first(pc.equal(lengths, 0), first_row)) is not None:
        raise DataError(source, row, f"no {field}")
    flat = pc.list_flatten(column)
    has_docid = pa.types.is_struct(flat.type) and flat.type.get_field_index("docid") >= 0
    docids = pc.struct_field(flat, "docid") if has_docid else pa.nulls(len(flat), pa.string())
    try:
        docids = pc.cast(docids, pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise DataError(source, first_row, f"the docids of '{field}' are not strings or numbers") from None
    if (missing := _first(pc.equal(docids, ""), 0)) is not None:
        row = first_row + pc.list_parent_indices(column)[missing].as_py()
        raise DataError(source, row, f"a passage of {field} has no 'docid'")
    offsets = np.concatenate([[0], np.cumsum(lengths.to_numpy())]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), docids)


def read_groups(source: str, cache_dir: str | Path | None = None, need_positives: bool = True) -> pa.Table:
    """Tevatron query groups as a table (qid, query, positives, negatives: docid lists), checked row by row:
    every row has a query_id (unique), a query and (if `need_positives`) a positive passage, every passage a
    docid."""
    tables, seen = [], {}
    for first_row, batch in _batches(load_rows(source, cache_dir), source):
        qids = _ids(batch, "query_id", source, first_row)
        for offset, qid in enumerate(qids.to_pylist()):
            if qid in seen:
                raise DataError(source, first_row + offset, f"duplicate query_id '{qid}' (first on row {seen[qid]})")
            seen[qid] = first_row + offset
        columns = {
            "qid": qids,
            "query": _ids(batch, "query", source, first_row),
            "positives": _passage_ids(batch, "positive_passages", source, first_row, need_positives),
            "negatives": _passage_ids(batch, "negative_passages", source, first_row, required=False),
        }
        tables.append(pa.table(columns))
    return pa.concat_tables(tables)


def check_known(groups: pa.Table, docids: pa.Array, source: str) -> None:
    """Every positive and negative of `groups` must be one of `docids` (the corpus); else an error at its row."""
    rows = []
    for field in ("positives", "negatives"):
        column = groups[field].combine_chunks()
        flat = pc.list_flatten(column)
        if (unknown := _first(pc.invert(pc.is_in(flat, value_set=docids)), 0)) is not None:
            rows.append((pc.list_parent_indices(column)[unknown].as_py() + 1, field, flat[unknown].as_py()))
    if rows:
        row, field, docid = min(rows)
        raise DataError(source, row, f"unknown docid '{docid}' among the {field} (not in the corpus)")


def _text(table: pa.Table, name: str) -> pa.Array:
    """Column `name` as strings, null (or absent) as empty."""
    if name not in table.column_names:
        return pa.array([""] * table.num_rows, pa.string())
    return pc.fill_null(pc.cast(table[name].chunk(0), pa.string()), "")


def write_corpus(source: str, dest: str | Path, cache_dir: str | Path | None = None) -> int:
    """A Tevatron corpus (docid, title, text) -> corpus.parquet (id, title, text), streamed; every row needs a
    docid, unique, and the corpus a text column. Returns the number of passages."""
    chunks = []
    with atomic_path(dest) as tmp, pq.ParquetWriter(tmp, CORPUS_SCHEMA) as writer:
        for first_row, batch in _batches(load_rows(source, cache_dir), source):
            if "text" not in batch.column_names:
                raise DataError(source, first_row, "no 'text'")
            ids = _ids(batch, "docid", source, first_row)
            writer.write_table(pa.table([ids, _text(batch, "title"), _text(batch, "text")], schema=CORPUS_SCHEMA))
            chunks.append(ids)
        ids = pa.chunked_array(chunks)
        if len(pc.unique(ids)) < len(ids):
            repeated = ids.to_pandas().duplicated()
            row = int(repeated.idxmax()) + 1
            raise DataError(source, row, f"duplicate docid '{ids[row - 1].as_py()}'")
    return len(ids)


def write_split(
    source: str,
    corpus: str | Path,
    qrels_out: str | Path,
    queries_out: str | Path,
    negatives_out: str | Path,
    cache_dir: str | Path | None = None,
    judgements: str | Path | None = None,
) -> None:
    """One split's Tevatron query groups -> its qrels, its queries (qid, text) and its negatives
    (`qid<TAB>pid,...`, in the groups' order), after checking every docid against the prepared corpus. The qrels
    are every positive (rel 1), or the `judgements` file's (TREC `qid 0 docid rel` or `qid docid`, as MS MARCO's
    qrels.dev.small.tsv, the judgements Tevatron's guide evaluates with; the groups then need no positives)."""
    groups = read_groups(source, cache_dir, need_positives=judgements is None)
    check_known(groups, pq.read_table(corpus, columns=["id"])["id"].combine_chunks(), source)
    write_parquet(queries_table(groups["qid"].to_pylist(), groups["query"].to_pylist()), queries_out)
    try:
        if judgements is None:
            qrels = groups.select(["qid", "positives"]).to_pandas().explode("positives").drop_duplicates()
            write_parquet(qrels.rename(columns={"positives": "docid"}).assign(rel=1).reset_index(drop=True), qrels_out)
        else:
            qrels_to_parquet(judgements, corpus, queries_out, qrels_out)
    except DataError:
        Path(queries_out).unlink()
        raise
    write_negatives(dict(zip(groups["qid"].to_pylist(), groups["negatives"].to_pylist())), negatives_out)


def merge_queries(paths: Sequence[str | Path], dest: str | Path) -> None:
    """The splits' queries (qid, text) -> one queries.parquet; a query with another text in an earlier split
    is an error."""
    tables = ((path, pq.read_table(path, columns=["qid", "text"])) for path in paths)
    pairs = ((path, zip(table["qid"].to_pylist(), table["text"].to_pylist())) for path, table in tables)
    write_merged_queries(pairs, dest, "split")
