"""dr_core.memo: entries come back as stored copies, keys change with what they are computed from, and the
memoized fingerprints are dr_core.fingerprint's."""

import os
import time

from dr_core import memo
from dr_core.fingerprint import step_fingerprint


def test_entries_come_back_as_copies_and_only_exact_json_is_stored(tmp_path):
    m = memo.Memo(tmp_path / "m.json", keep=2)
    value = {"a": [1, {"b": 2.5}]}
    m.put("k", value)
    value["a"].append(3)  # later changes to the value stay out of the memo
    m.save()
    assert memo.Memo(tmp_path / "m.json").get("k") == {"a": [1, {"b": 2.5}]}
    m.put("ints", {1: 2})  # JSON would give {"1": 2} back
    m.put("nan", float("nan"))
    assert m.get("ints") is None and m.get("nan") is None
    m.put("k2", 2)
    m.put("k3", 3)
    m.save()
    assert memo.Memo(tmp_path / "m.json").entries == {"k2": 2, "k3": 3}  # the `keep` newest


def test_sources_key_changes_on_every_write_and_waits_for_recent_ones(tmp_path):
    source = tmp_path / "a.py"
    source.write_text("x = 1\n")
    assert memo.sources_key(tmp_path) is None  # written less than SETTLE_S ago
    old = time.time() - 10
    os.utime(source, (old, old))
    assert memo.sources_key(tmp_path, settle_s=0) == memo.sources_key(tmp_path, settle_s=0)
    before = memo.sources_key(tmp_path, settle_s=0)
    source.write_text("x = 2\n")
    os.utime(source, (old, old))  # same size, mtime put back: the ctime still differs
    assert memo.sources_key(tmp_path, settle_s=0) != before
    (tmp_path / "b.py").write_text("")
    assert memo.sources_key(tmp_path, settle_s=0) not in (before, None)


def test_step_fingerprints_are_dr_core_fingerprints(tmp_path):
    m = memo.Memo(tmp_path / "m.json")
    first = memo.step_fingerprints(m)
    assert first("evaluate") == step_fingerprint("evaluate")
    m.save()
    again = memo.step_fingerprints(memo.Memo(tmp_path / "m.json"))
    assert again("evaluate") == step_fingerprint("evaluate")


def test_add_missing_fills_what_validation_added():
    recipe = {"model": {"base": "x"}, "data": {"eval": [{"dataset": "d"}]}}
    filled = {"model": {"base": "x", "lr": 1}, "data": {"eval": [{"dataset": "d", "split": "test"}]}, "seed": 0}
    memo.add_missing(recipe, filled)
    assert recipe == filled
