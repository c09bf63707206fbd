"""Fingerprints of the dr_core code a workflow step runs, so that editing that code reruns the step.

A step is a `python -m dr_core <command>` (its handler in its `dr_core.commands` module, the functions and classes
of that module it uses, and the dr_core modules they import: at the module's top, for the names they use, or inside
them) or a module run as `python -m dr_core.<module>`. The fingerprint hashes those sources and, transitively, every
dr_core module they import, at module level or inside functions. Nothing is imported: the command modules are
parsed with `ast`, other modules are scanned for `import dr_core...` / `from dr_core... import` lines (dr_core
imports itself by absolute names), so all the workflow's fingerprints take milliseconds at Snakemake's parse time.
"""

from __future__ import annotations

import ast
import hashlib
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path

PACKAGE = "dr_core"
PACKAGE_DIR = Path(__file__).resolve().parent
_IMPORT = re.compile(
    rf"^[ \t]*(?:from[ \t]+({PACKAGE}[\w.]*)[ \t]+import[ \t]+(\([^)]*\)|[^\n#]*)|import[ \t]+({PACKAGE}[\w.]*))", re.M
)


def module_file(name: str) -> Path | None:
    """The source file of dr_core module `name` (`dr_core.x.y`), or None when it is not one."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    base = PACKAGE_DIR.joinpath(*parts[1:])
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def imported_modules(source: str) -> set[str]:
    """dr_core modules that `source` imports (`from package import submodule` counts the submodule)."""
    found: set[str] = set()
    for m in _IMPORT.finditer(source):
        if m.group(3):
            found.add(m.group(3))
            continue
        found.add(m.group(1))
        names = (n.split()[0] for n in m.group(2).strip("()").split(",") if n.strip())
        found |= {f"{m.group(1)}.{name}" for name in names}
    return {name for name in found if module_file(name) is not None}


@cache
def _module_imports(module: str) -> frozenset[str]:
    return frozenset(imported_modules(module_file(module).read_text()))


def closure(modules: set[str]) -> list[str]:
    """`modules` and every dr_core module they import, transitively, sorted."""
    seen: set[str] = set()
    todo = list(modules)
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo += _module_imports(module) - seen
    return sorted(seen)


COMMANDS = f"{PACKAGE}.commands"


@cache
def _commands() -> dict[str, tuple[str, str]]:
    """Command name -> (its dr_core.commands module, its handler), from each module's `s = sub.add_parser("name",
    ...)` followed by `s.set_defaults(func=handler)`."""
    handlers: dict[str, tuple[str, str]] = {}
    for path in sorted(module_file(COMMANDS).parent.glob("[!_]*.py")):
        module, command = f"{COMMANDS}.{path.stem}", None
        for node in ast.walk(_parsed(module)[1]):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            if node.func.attr == "add_parser" and node.args and isinstance(node.args[0], ast.Constant):
                command = node.args[0].value
            elif node.func.attr == "set_defaults" and command is not None:
                for keyword in node.keywords:
                    if keyword.arg == "func" and isinstance(keyword.value, ast.Name):
                        handlers[command] = (module, keyword.value.id)
    return handlers


def step_of(handler: Callable) -> str | None:
    """The `python -m dr_core` command whose handler is `handler` (a function of a dr_core.commands module)."""
    where = (handler.__module__, handler.__name__)
    return next((command for command, found in _commands().items() if found == where), None)


@cache
def _parsed(module: str) -> tuple[str, ast.Module]:
    source = module_file(module).read_text()
    return source, ast.parse(source)


def _top_level_imports(tree: ast.Module) -> dict[str, set[str]]:
    """Name -> the dr_core modules importing it runs, for a module's top-level `from dr_core... import name` and
    `import dr_core... as name` lines (`from package import submodule`: the package and the submodule)."""
    names: dict[str, set[str]] = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == PACKAGE:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                names[alias.asname or alias.name] = (
                    {node.module, submodule} if module_file(submodule) else {node.module}
                )
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE and alias.asname:
                    names[alias.asname] = {alias.name}
    return names


def command_definitions(module: str, handler: str) -> list[ast.FunctionDef | ast.ClassDef]:
    """A command's handler and the functions and classes of its module that it uses, transitively."""
    tree = _parsed(module)[1]
    local = {node.name: node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    seen, todo = [], [handler]
    while todo:
        name = todo.pop()
        if name in local and local[name] not in seen:
            seen.append(local[name])
            todo += [n.id for n in ast.walk(local[name]) if isinstance(n, ast.Name)]
    return seen


def step_modules(step: str) -> tuple[list[str], list[str]]:
    """The sources of the command-module code, and the dr_core modules (transitively), that `python -m dr_core
    <step>` runs: its handler with what it uses of its module, and every dr_core module they import (at the
    module's top or inside the functions); `dr_core.<module>` names a module run as a program (`python -m
    dr_core.plots ...`)."""
    if step.startswith(f"{PACKAGE}."):
        return [], closure({step})
    if step not in _commands():
        raise ValueError(f"{COMMANDS} has no command {step!r}")
    module, handler = _commands()[step]
    source, tree = _parsed(module)
    lines, imports = source.splitlines(), _top_level_imports(tree)
    definitions = command_definitions(module, handler)
    sources = ["\n".join(lines[d.lineno - 1 : d.end_lineno]) for d in definitions]
    used = {m for d in definitions for n in ast.walk(d) if isinstance(n, ast.Name) for m in imports.get(n.id, ())}
    return sources, closure(used.union(*map(imported_modules, sources)))


@cache
def step_fingerprint(step: str) -> str:
    """A short hash of the code `python -m dr_core <step>` runs (see `step_modules`)."""
    functions, modules = step_modules(step)
    digest = hashlib.sha256()
    for function in functions:
        digest.update(function.encode())
    for module in modules:
        digest.update(module.encode() + b"\0" + module_file(module).read_bytes())
    return digest.hexdigest()[:16]
