"""Text templates: the defaults, their check (naming the config key), and how passages and queries are built from
them. Light on purpose: the Snakefile checks the recipe's templates at every invocation, before any step runs."""

from __future__ import annotations

from string import Formatter

PASSAGE_TEMPLATE = "Title: {title} Text: {text}"
PLAIN = "{text}"


def check_template(template: str, fields: set[str], key: str) -> str:
    """`template` if it is a format string using `{text}` and no field outside `fields`; else a ValueError
    naming the config `key`."""
    try:
        used = {name for _, name, _, _ in Formatter().parse(template) if name is not None}
    except ValueError as e:
        raise ValueError(f"{key}: {template!r} is not a valid template ({e})") from None
    unknown = sorted(used - fields)
    if unknown or "text" not in used:
        allowed = ", ".join("{" + f + "}" for f in sorted(fields))
        raise ValueError(f"{key}: {template!r} must use {{text}} and only {allowed} (found {unknown or 'no {text}'})")
    return template


def format_passages(titles: list[str], texts: list[str], template: str, untitled: str = PLAIN) -> list[str]:
    """Apply a template such as 'Title: {title} Text: {text}'; a passage without title gets `untitled`
    (by default its text alone, so no stray separator)."""
    out = []
    for title, text in zip(titles, texts):
        title, text = (title or "").strip(), text or ""
        out.append((template.format(title=title, text=text) if title else untitled.format(text=text)).strip())
    return out


def format_queries(texts: list[str], template: str) -> list[str]:
    """Apply a query template such as 'query: {text}' (prefixes, instructions)."""
    return [template.format(text=text or "") for text in texts]
