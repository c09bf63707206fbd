"""Fingerprints of the dr_core code a workflow step runs, so that editing that code reruns the step.

A step is a `python -m dr_core <command>` (its handler in `dr_core.cli`, the cli helpers it calls, and the dr_core
modules they import) or a module run as `python -m dr_core.<module>`. The fingerprint hashes those sources and,
transitively, every dr_core module they import, at module level or inside functions. Nothing is imported: cli.py
is parsed with `ast`, other modules are scanned for `import dr_core...` / `from dr_core... import` lines (dr_core
imports itself by absolute names), so all the workflow's fingerprints take milliseconds at Snakemake's parse time.
"""

from __future__ import annotations

import ast
import hashlib
import re
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


@cache
def _cli() -> tuple[str, ast.Module, dict[str, str]]:
    """cli.py's source, syntax tree, and command name -> handler function (from `s = sub.add_parser("name", ...)`
    followed by `s.set_defaults(func=handler)`)."""
    source = module_file(f"{PACKAGE}.cli").read_text()
    tree = ast.parse(source)
    handlers: dict[str, str] = {}
    command = None
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        if node.func.attr == "add_parser" and node.args and isinstance(node.args[0], ast.Constant):
            command = node.args[0].value
        elif node.func.attr == "set_defaults" and command is not None:
            for keyword in node.keywords:
                if keyword.arg == "func" and isinstance(keyword.value, ast.Name):
                    handlers[command] = keyword.value.id
    return source, tree, handlers


def step_of(handler: str) -> str | None:
    """The `python -m dr_core` command whose handler is the cli function named `handler`."""
    return next((command for command, name in _cli()[2].items() if name == handler), None)


def cli_functions(handler: str) -> list[ast.FunctionDef]:
    """A command's handler and the cli functions it calls, transitively."""
    tree = _cli()[1]
    functions = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    seen, todo = [], [handler]
    while todo:
        name = todo.pop()
        if name in functions and functions[name] not in seen:
            seen.append(functions[name])
            todo += [n.id for n in ast.walk(functions[name]) if isinstance(n, ast.Name)]
    return seen


def step_modules(step: str) -> tuple[list[str], list[str]]:
    """The sources of the cli functions, and the dr_core modules (transitively), that `python -m dr_core <step>`
    runs; `dr_core.<module>` names a module run as a program (`python -m dr_core.plots ...`)."""
    if step.startswith(f"{PACKAGE}."):
        return [], closure({step})
    source, _, handlers = _cli()
    if step not in handlers:
        raise ValueError(f"dr_core.cli has no command {step!r}")
    lines = source.splitlines()
    functions = ["\n".join(lines[f.lineno - 1 : f.end_lineno]) for f in cli_functions(handlers[step])]
    return functions, closure(set().union(*map(imported_modules, functions)))


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
