"""SIGKILL (a real signal: what a preempted or OOM-killed job gets, with no chance to clean up) in the middle of
`python -m dr_core encode` and `retrieve`: nothing that looks done is left behind (outputs are written atomically;
a killed step may leave only hidden `.<name>.*.tmp` siblings), and the rerun writes exactly what an uninterrupted
run writes. The work is the fixture repeated until it takes a few seconds, so the kill lands mid-run."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from conftest import prepare_tokenized

from dr_core.encode import EncodeSettings, encode_corpus_shard
from dr_core.index import IndexSettings, build_index
from dr_core.model import BiEncoder, EncoderSpec, load_tokenizer

CORPUS_COPIES = 50  # 48 passages -> 2,400, encoded 4 at a time: about a second of work on one thread
QUERY_COPIES = 25  # the judged train queries -> about 400, searched 2 at a time


def dr_core_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "dr_core", "--threads", "1", *args]


def run_to_completion(argv: list[str]) -> float:
    start = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return time.monotonic() - start


def kill_once_working(argv: list[str], log: Path, working: re.Pattern, timeout_s: float = 120) -> str:
    """Start `argv`, SIGKILL it as soon as its stderr shows `working`; its stderr. Fails if it ended by itself."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TQDM_")}  # encode's progress bar is the signal
    with open(log, "w") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, env=env)
    deadline = time.monotonic() + timeout_s
    try:
        while proc.poll() is None and time.monotonic() < deadline and not working.search(log.read_text()):
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)  # the real signal; nothing is sent to a process already reaped
        proc.wait()
    text = log.read_text()
    assert working.search(text), f"killed before it started working:\n{text[-2000:]}"
    assert proc.returncode == -signal.SIGKILL, f"it ended ({proc.returncode}) before the kill:\n{text[-2000:]}"
    return text


def assert_nothing_looks_done(folder: Path) -> None:
    """Only the killed step's own temporaries (hidden, `.tmp`) may remain: no file a workflow would take as done."""
    left = sorted(p.name for p in folder.iterdir())
    assert all(name.startswith(".") and name.endswith(".tmp") for name in left), left


def repeated(src: Path, dest: Path, column: str, copies: int) -> None:
    """`src`'s rows `copies` times, the ids in `column` made unique (`<id>~<copy>`)."""
    table = pq.read_table(src)
    parts = []
    for c in range(copies):
        kind = table.schema.field(column).type
        ids = pc.binary_join_element_wise(table.column(column), pa.scalar(str(c), kind), pa.scalar("~", kind))
        parts.append(table.set_column(table.schema.get_field_index(column), column, ids))
    pq.write_table(pa.concat_tables(parts), dest)


def tiny_model(tiny_bert: Path, d: Path) -> Path:
    BiEncoder.from_base(str(tiny_bert), EncoderSpec(pooling="mean", q_max_len=16, p_max_len=48)).save(
        d / "m", load_tokenizer(tiny_bert)
    )
    return d / "m"


def test_sigkill_mid_encode_leaves_no_shard_and_the_rerun_equals_an_uninterrupted_run(tiny_bert, tmp_path):
    d = prepare_tokenized(tiny_bert, tmp_path)
    model = tiny_model(tiny_bert, d)
    repeated(d / "tc.parquet", d / "big.parquet", "id", CORPUS_COPIES)
    ref, out = d / "ref", d / "out"
    out.mkdir()

    def argv(folder: Path) -> list[str]:
        return dr_core_argv(
            "encode", "--model", str(model), "--tokens", str(d / "big.parquet"), "--shard", "0", "--num-shards", "1",
            "--batch-size", "4", "--emb-out", str(folder / "emb.npy"), "--ids-out", str(folder / "ids.txt"),
        )  # fmt: skip

    uninterrupted = run_to_completion(argv(ref))
    # tqdm's first count above 0 comes at least 0.1 s into the embedding loop
    kill_once_working(
        argv(out), d / "killed.log", re.compile(rf"encode shard 0/1:\s+\d+%\|[^|]*\|\s*[1-9]\d*/{48 * CORPUS_COPIES}")
    )
    assert_nothing_looks_done(out)
    rerun = run_to_completion(argv(out))

    emb, expected = np.load(out / "emb.npy"), np.load(ref / "emb.npy")
    assert emb.shape == (48 * CORPUS_COPIES, 32) and np.array_equal(emb, expected)
    assert (out / "ids.txt").read_bytes() == (ref / "ids.txt").read_bytes()
    print(f"encode: uninterrupted {uninterrupted:.1f}s, rerun {rerun:.1f}s")


def test_sigkill_mid_retrieve_leaves_no_run_and_the_rerun_equals_an_uninterrupted_run(tiny_bert, tmp_path):
    d = prepare_tokenized(tiny_bert, tmp_path)
    model = tiny_model(tiny_bert, d)
    encode_corpus_shard(model, d / "tc.parquet", 0, 1, d / "emb.npy", d / "emb.ids", EncodeSettings(batch_size=16))
    build_index([(d / "emb.npy", d / "emb.ids")], model, d / "index.faiss", d / "index.json", IndexSettings("Flat"))
    repeated(d / "tq.parquet", d / "queries.parquet", "id", QUERY_COPIES)
    repeated(d / "qrels.parquet", d / "qrels_big.parquet", "qid", QUERY_COPIES)
    ref, out = d / "ref", d / "out"
    out.mkdir()

    def argv(folder: Path) -> list[str]:
        return dr_core_argv(
            "retrieve", "--model", str(model), "--query-tokens", str(d / "queries.parquet"),
            "--qrels", str(d / "qrels_big.parquet"), "--index", str(d / "index.faiss"),
            "--index-meta", str(d / "index.json"), "--ids", str(d / "emb.ids"), "--out", str(folder / "run.trec"),
            "--tag", "dense", "--k", "10", "--query-batch", "2", "--batch-size", "2",
        )  # fmt: skip

    uninterrupted = run_to_completion(argv(ref))
    # the first batch's lines are in the (temporary) run file: the kill lands while it is being written
    kill_once_working(argv(out), d / "killed.log", re.compile(r"INFO dr_core\.search: \d+ queries searched"))
    assert_nothing_looks_done(out)
    rerun = run_to_completion(argv(out))

    run, expected = (out / "run.trec").read_bytes(), (ref / "run.trec").read_bytes()
    assert run == expected and len(run.splitlines()) == 16 * QUERY_COPIES * 10  # 16 judged train queries, k 10
    print(f"retrieve: uninterrupted {uninterrupted:.1f}s, rerun {rerun:.1f}s")
