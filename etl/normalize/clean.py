"""The slow path for strings PostgreSQL cannot store (NUL, lone surrogates) and Decimal numbers.

PostgreSQL `text` and `jsonb` reject the NUL character, and UTF-8 (hence both databases'
drivers) cannot encode a lone surrogate. The rule, identical on PostgreSQL and SQLite:

* the column gets the value with every offending character replaced by U+FFFD (in strings and
  in the strings and keys nested in JSON values);
* the row's `extra` gets ``{"_original": {"<column>": "<escaped>"}}`` where ``<escaped>`` is
  ``json.dumps(original_value)`` (ASCII JSON text, offending characters as ``\\u0000`` /
  ``\\udXXX`` escapes): ``json.loads`` gives the original back exactly.

Decimal numbers (a parser run without ``use_float``) become floats in JSON values: JSON has one
number type, so nothing is lost. This module runs only for conversations that need it: the
caller detects them from the content-hash serialisation it does anyway.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

_OFFENDING = re.compile("[\x00\ud800-\udfff]")
REPLACEMENT = "\ufffd"


def _float_default(value: object) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    return str(value)


def escaped(value: Any) -> str:
    """The lossless, storable text form of `value` (ASCII JSON)."""
    return json.dumps(value, ensure_ascii=True, default=_float_default)


class _Scrubber:
    """Rebuilds a value with offending characters replaced; remembers whether any were."""

    __slots__ = ("found",)

    def __init__(self) -> None:
        self.found = False

    def __call__(self, value: Any) -> Any:
        cls = value.__class__
        if cls is str:
            if _OFFENDING.search(value):
                self.found = True
                return _OFFENDING.sub(REPLACEMENT, value)
            return value
        if isinstance(value, dict):
            return {self(k): self(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self(v) for v in value]
        if cls is Decimal:
            return float(value)
        return value


def _scrub(value: Any) -> tuple[Any, bool]:
    scrubber = _Scrubber()
    cleaned = scrubber(value)
    return cleaned, scrubber.found


def as_stored(text: str) -> str:
    """`text` as a column holds it: each NUL and lone surrogate replaced by U+FFFD (the value
    a user sees, and so names, in the warehouse)."""
    cleaned, _ = _scrub(text)
    return str(cleaned)


def storable(value: Any) -> Any:
    """`value` for a JSON column of the run log: itself, or, when it holds a NUL or a lone
    surrogate (which PostgreSQL refuses), {"_original": its exact text as ASCII JSON}."""
    if value is None:
        return None
    _, offending = _scrub(value)
    return {"_original": escaped(value)} if offending else value


def clean_row(row: tuple[Any, ...], columns: tuple[str, ...], extra_at: int) -> tuple[Any, ...]:
    """Apply the rule to one row; returns the row itself when nothing needed changing."""
    values: list[Any] | None = None
    originals: dict[str, str] = {}
    for i, value in enumerate(row):
        if i == extra_at or value is None or value.__class__ in (int, bool, float):
            continue
        cleaned, offending = _scrub(value)
        if offending:
            originals[columns[i]] = escaped(value)
        if cleaned is not value:
            if values is None:
                values = list(row)
            values[i] = cleaned
    extra = row[extra_at]
    if extra is not None:
        cleaned, offending = _scrub(extra)
        if offending:
            originals["extra"] = escaped(extra)
        if cleaned is not extra:
            if values is None:
                values = list(row)
            values[extra_at] = extra = cleaned
    if originals:
        if values is None:
            values = list(row)
        values[extra_at] = {**(extra or {}), "_original": originals}
    return row if values is None else tuple(values)
