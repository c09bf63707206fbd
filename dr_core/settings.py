"""Every step's settings: dataclasses whose fields are its command-line flags, one convention for all steps.

A settings field is declared with `setting(default, doc)` (`required(doc)` when it has no default), which keeps
its help text (and the values it accepts) in the field's metadata. `add_settings` makes one `--snake-case-name`
flag per field, in an argument group whose help shows each default; `settings_from_args` builds the dataclass
back from the parsed arguments; `settings_argv` writes a settings dataclass or a config section as those flags
(what the workflow's rules, the tests and the benchmarks pass). A bool field is `--name` / `--no-name`, an
optional field also takes `null`, a list or dict field takes one JSON value. With a `prefix` (`dro`) the flags
are `--dro-type`, `--dro-alpha`, ...

`SettingsParser` is the parser class of the subcommands: a command's settings flags are made on first use, so
that the other commands never import the settings' modules (torch, transformers, bm25s, faiss).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


def setting(default: T, doc: str, choices: Sequence[str] | None = None) -> T:
    """A dataclass field with its help text and, when given, the values it accepts (checked by the CLI)."""
    return dataclasses.field(default=default, metadata={"help": doc, "choices": choices})


def required(doc: str) -> Any:
    """A dataclass field with its help text and no default: its flag is required."""
    return dataclasses.field(metadata={"help": doc, "choices": None})


def dest(name: str, prefix: str = "") -> str:
    """The argparse destination of field `name` (`prefix_name` with a prefix)."""
    return f"{prefix}_{name}" if prefix else name


def flag(name: str, prefix: str = "") -> str:
    """The flag of field `name`: `--snake-case-name`, `--prefix-snake-case-name` with a prefix."""
    return "--" + dest(name, prefix).replace("_", "-")


def _converter(hint: Any, where: str) -> Callable[[str], Any]:
    """str -> value for a field typed `hint`: int, float or str, or a list or dict as one JSON value; an optional
    field also takes `null`. The function's name is what argparse's error calls the expected value."""
    args = typing.get_args(hint)
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args
    inner = [a for a in args if a is not type(None)] if optional else [hint]
    base = typing.get_origin(inner[0]) or inner[0]
    if len(inner) != 1 or base not in (int, float, str, list, dict):
        raise TypeError(f"{where}: no command-line flag for the type {hint}")
    if base in (list, dict):
        kind = "JSON list" if base is list else "JSON object"

        def convert(text: str) -> Any:
            value = json.loads(text)  # a JSONDecodeError is a ValueError: argparse reports the flag and value
            if not (isinstance(value, base) or (optional and value is None)):
                raise ValueError(text)
            return value
    else:
        kind = base.__name__

        def convert(text: str) -> Any:
            return None if optional and text == "null" else base(text)

    convert.__name__ = f"{kind} or null" if optional else kind
    return convert


def _shown(value: Any) -> str:
    """A default as the help shows it."""
    return repr(value) if isinstance(value, str) else _text(value)


def _text(value: Any) -> str:
    """A value as its flag takes it: null, true/false and JSON for None, bools, lists and dicts."""
    if value is None or isinstance(value, (bool, list, dict)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def add_settings(parser: argparse.ArgumentParser, cls: type, prefix: str = "") -> None:
    """One flag per field of dataclass `cls`, in a group named after it; each help ends with the default."""
    hints = typing.get_type_hints(cls)
    doc = " ".join((cls.__doc__ or "").split())
    group = parser.add_argument_group(f"{cls.__name__} (flags {flag('*', prefix)})" if prefix else cls.__name__, doc)
    for f in dataclasses.fields(cls):
        where = f"{cls.__qualname__}.{f.name}"
        text = f.metadata.get("help")
        if not text:
            raise TypeError(f"{where} has no help: declare it with dr_core.settings.setting")
        required = f.default is dataclasses.MISSING
        kwargs = {"dest": dest(f.name, prefix), "default": None if required else f.default, "required": required}
        if hints[f.name] is bool:
            action = group.add_argument(flag(f.name, prefix), action=argparse.BooleanOptionalAction, **kwargs)
        else:
            convert = _converter(hints[f.name], where)
            action = group.add_argument(flag(f.name, prefix), type=convert, choices=f.metadata["choices"], **kwargs)
        default = "required" if required else f"default: {_shown(f.default)}"
        action.help = f"{text} ({default})".replace("%", "%%")  # set after: BooleanOptionalAction may add its own


def settings_from_args(cls: type[T], args: argparse.Namespace, prefix: str = "") -> T:
    """The dataclass `cls` from arguments parsed with `add_settings(parser, cls, prefix)`."""
    return cls(**{f.name: getattr(args, dest(f.name, prefix)) for f in dataclasses.fields(cls)})


def settings_argv(settings: Any, prefix: str = "") -> list[str]:
    """A settings dataclass, or a mapping of field names to values (a config section), as `--name=value` flags
    (`--name` / `--no-name` for bools) that `add_settings` parses back."""
    items = dataclasses.asdict(settings).items() if dataclasses.is_dataclass(settings) else settings.items()
    argv = []
    for name, value in items:
        if isinstance(value, bool):
            argv.append(flag(name, prefix) if value else "--no-" + flag(name, prefix)[2:])
        else:
            argv.append(f"{flag(name, prefix)}={_text(value)}")
    return argv


class SettingsParser(argparse.ArgumentParser):
    """An argument parser that adds the flags of its `settings` (flag prefix -> "module:Class") on first use."""

    def __init__(self, *args: Any, settings: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pending = dict(settings or {})

    def _add_pending(self) -> None:
        pending, self._pending = self._pending, {}
        for prefix, target in pending.items():
            module, _, name = target.partition(":")
            add_settings(self, getattr(importlib.import_module(module), name), prefix)

    def parse_known_args(self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None):
        self._add_pending()
        return super().parse_known_args(args, namespace)

    def format_help(self) -> str:
        self._add_pending()
        return super().format_help()
