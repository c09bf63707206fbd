"""Benchmark tokenization to Arrow (`dr_core.tokenization.tokenize_table`) against the seeds' way of doing it.

    python benchmarks/tokenize_arrow.py [--passages 1000000] [--workdir /tmp/tokenize_bench]

The seeds (Tevatron's tokenize_passages / build_train, OpenMatch's build_hn) tokenize with the same fast
tokenizer and write one JSON line of token ids per passage. Both sides here read the same synthetic corpus
(Parquet: id, title, text of MS MARCO-like length), apply the template "Title: {title} Text: {text}", truncate
to 128 tokens with the base model's tokenizer (BERT uncased vocabulary) and write their output; wall time and
peak RSS (process tree, `measure` from msmarco_data.py) are printed as a Markdown table with ratios.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).parent))
from msmarco_data import measure  # noqa: E402

MODEL = "pkg:cognition/model"
OURS = (
    "from dr_core.model import load_tokenizer; from dr_core.tokenization import TokenizeSettings, tokenize_table; "
    f"tokenize_table('corpus.parquet', 'tokens.parquet', load_tokenizer('{MODEL}'), 'id', "
    "TokenizeSettings(128, 'Title: {title} Text: {text}'))"
)
# The seeds' shape: tokenizer over batches of formatted passages, one JSON line {"text_id", "text": ids} each.
SEED = f"""
import json
import pyarrow.parquet as pq
from dr_core.model import load_tokenizer
tok = load_tokenizer('{MODEL}')
with open('tokens.jsonl', 'w') as out:
    for batch in pq.ParquetFile('corpus.parquet', pre_buffer=False).iter_batches(batch_size=10_000):
        cols = batch.to_pydict()
        texts = [f'Title: {{t}} Text: {{x}}' if t else x for t, x in zip(cols['title'], cols['text'])]
        ids = tok(texts, add_special_tokens=False, truncation=True, max_length=126)['input_ids']
        out.writelines(json.dumps({{'text_id': i, 'text': t}}) + '\\n' for i, t in zip(cols['id'], ids))
"""


def write_corpus(path: Path, passages: int, seed: int = 0) -> None:
    """Synthetic passages of words from the tokenizer's own vocabulary: 55 words of text, a 6-word title
    (10% without one), about MS MARCO's passage length."""
    from dr_core.model import load_tokenizer

    rng = np.random.default_rng(seed)
    vocab = np.array([w for w in load_tokenizer(MODEL).get_vocab() if w.isalpha() and len(w) > 2])
    schema = pa.schema([("id", pa.string()), ("title", pa.string()), ("text", pa.string())])
    with pq.ParquetWriter(path, schema) as writer:
        for lo in range(0, passages, 100_000):
            n = min(100_000, passages - lo)
            words = vocab[rng.integers(len(vocab), size=(n, 61))]
            text = [" ".join(row[6:]) for row in words]
            title = ["" if rng.random() < 0.1 else " ".join(row[:6]) for row in words]
            ids = [str(i) for i in range(lo, lo + n)]
            writer.write_table(pa.table({"id": ids, "title": title, "text": text}, schema=schema))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--passages", type=int, default=1_000_000)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/tokenize_bench"))
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    corpus = args.workdir / "corpus.parquet"
    if not (corpus.exists() and pq.read_metadata(corpus).num_rows == args.passages):  # deterministic: reuse
        write_corpus(corpus, args.passages)
    seed_wall, seed_rss = measure([sys.executable, "-c", SEED], args.workdir)
    ours_wall, ours_rss = measure([sys.executable, "-c", OURS], args.workdir)
    rows = pq.read_metadata(args.workdir / "tokens.parquet").num_rows
    print(f"{args.passages:,} passages ({rows:,} tokenized rows)")
    print(
        "| step | seed wall (s) | seed peak RSS (GB) | ours wall (s) | ours peak RSS (GB) "
        "| wall ours/seed | RSS ours/seed |"
    )
    print("|---|---|---|---|---|---|---|")
    print(
        f"| tokenize to Arrow | {seed_wall:.1f} | {seed_rss:.2f} | {ours_wall:.1f} | {ours_rss:.2f} | "
        f"{ours_wall / seed_wall:.2f} | {ours_rss / seed_rss:.2f} |"
    )


if __name__ == "__main__":
    main()
