"""Fingerprints of the code each step runs: which modules a step covers, and that an edit changes only its steps."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import REPO

from dr_core import fingerprint


def test_a_step_covers_its_handler_imports_transitively():
    functions, modules = fingerprint.step_modules("train")
    assert functions[0].startswith("def _train(")  # in dr_core.commands.training
    assert {"dr_core.train", "dr_core.loss", "dr_core.model"} <= set(modules)  # loss only through the trainer
    assert "dr_core.evaluate" not in modules and "dr_core.bm25" not in modules
    assert fingerprint.step_modules("fetch-msmarco")[0][0].startswith("def _fetch(")  # handler named unlike its command
    assert "dr_core.data.msmarco.toolkits" in fingerprint.step_modules("negatives-file")[1]  # `from pkg import module`
    with pytest.raises(ValueError, match="no command 'nope'"):
        fingerprint.step_modules("nope")


def test_dr_core_imports_itself_by_absolute_names():
    """The fingerprint reads only absolute dr_core imports: a relative one would hide a dependency."""
    relative = [p for p in fingerprint.PACKAGE_DIR.rglob("*.py") if re.search(r"^\s*from \.", p.read_text(), re.M)]
    assert relative == []


def steps_changed_by(tmp_path: Path, module: str, edit: Callable[[str], str], steps: list[str]) -> set[str]:
    """The steps among `steps` whose fingerprint changes when `edit` rewrites dr_core/`module`.py (a path such as
    `data/beir` or `commands/retrieval`), in a copy of the package."""
    shutil.copytree(REPO / "dr_core", tmp_path / "dr_core", ignore=shutil.ignore_patterns("__pycache__"))
    code = "import json, sys; from dr_core.fingerprint import step_fingerprint as f; print(json.dumps({s: f(s) for s in sys.argv[1:]}))"  # noqa: E501

    def run() -> dict[str, str]:
        proc = subprocess.run(
            [sys.executable, "-c", code, *steps], cwd=tmp_path, capture_output=True, text=True, check=True
        )
        return json.loads(proc.stdout)

    before = run()
    path = tmp_path / "dr_core" / f"{module}.py"
    path.write_text(edit(path.read_text()))
    after = run()
    return {s for s in steps if before[s] != after[s]}


def fingerprints_after_editing(tmp_path: Path, module: str, steps: list[str]) -> set[str]:
    """The steps whose fingerprint changes when a comment is appended to `module`."""
    return steps_changed_by(tmp_path, module, lambda text: text + "\n# edited\n", steps)


def test_editing_a_module_changes_the_fingerprint_of_the_steps_that_run_it(tmp_path):
    steps = ["train", "evaluate", "summarize", "bm25", "mine", "dr_core.plots"]
    changed = fingerprints_after_editing(tmp_path, "loss", steps)
    assert changed == {"train"}


def test_modules_in_the_data_package_and_its_subpackage_are_covered(tmp_path):
    """`dr_core.data.<module>` and `dr_core.data.msmarco.<module>` are found like top-level modules."""
    assert {"dr_core.data.beir", "dr_core.data.formats"} <= set(fingerprint.step_modules("prepare")[1])
    assert "dr_core.data.msmarco.tables" in fingerprint.step_modules("msmarco")[1]
    steps = ["prepare", "qrels", "train", "msmarco", "lotte"]
    changed = fingerprints_after_editing(tmp_path, "data/beir", steps)
    assert changed == {"prepare", "qrels"}
    changed = fingerprints_after_editing(tmp_path / "b", "data/msmarco/tables", steps)
    assert changed == {"msmarco"}


def fingerprints_after_inserting(tmp_path: Path, module: str, after: str, steps: list[str]) -> set[str]:
    """The steps whose fingerprint changes when a line is inserted after `after` in `module`."""

    def insert(text: str) -> str:
        assert after in text
        return text.replace(after, after + "\n    pass  # edited", 1)

    return steps_changed_by(tmp_path, module.replace(".", "/"), insert, steps)


def test_editing_a_handler_changes_only_its_step_and_a_shared_helper_the_steps_that_use_it(tmp_path):
    steps = ["bm25", "encode", "index", "retrieve", "mine", "msmarco", "tevatron", "prepare"]
    assert fingerprints_after_inserting(
        tmp_path / "a", "commands.retrieval", "def _bm25(a: argparse.Namespace) -> None:", steps
    ) == {"bm25"}
    shared = "def given(a: argparse.Namespace, *names: str) -> list:"
    assert fingerprints_after_inserting(tmp_path / "b", "commands.__init__", shared, steps) == {"msmarco", "tevatron"}
