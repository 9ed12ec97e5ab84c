"""Copies the known keys of one exported object into a row, by each key's column kind (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from etl.compiled import accelerator
from etl.normalize.columns import BOOL, INT, JSON, TEXT, TIME

# key -> (row position, kind); the position is -1 for SKIP and TAG.
Fields = dict[str, tuple[int, int]]

SKIP: Final = 5  # a known key the caller handles itself (sub-objects, lists)
TAG: Final = 6  # the `type` tag: dropped when it has the expected value, else kept in extra

# BIGINT bounds: a larger integer would make the database refuse the whole batch.
INT_MIN: Final = -(2**63)
INT_MAX: Final = 2**63 - 1

_fromisoformat = datetime.fromisoformat


class BadField(Exception):
    """A field that makes the conversation unloadable; `path` grows as it bubbles up."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(problem)
        self.path = path
        self.problem = problem


def parse_time(value: Any, key: str) -> datetime:
    """An ISO-8601 timestamp with a UTC offset, as an aware datetime in UTC."""
    if value.__class__ is not str:
        raise BadField(key, f"expected an ISO-8601 timestamp string, got {type(value).__name__}")
    try:
        parsed = _fromisoformat(value)
        if parsed.tzinfo is not None:
            return parsed.astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: year 1 or 9999 shifted out of range
        raise BadField(key, f"unparseable timestamp {value!r}") from None
    # The API always sends an offset; guessing a zone would silently shift times.
    raise BadField(key, f"timestamp {value!r} has no UTC offset")


def project_py(
    obj: Mapping[str, Any], fields: Fields, row: list[Any], tag: str | None = None
) -> dict[str, Any] | None:
    """Copy the known keys of `obj` into `row`; return the rest (unknown keys, misfits) or None.

    A value whose type does not fit its column (a "misfit") is returned with the unknown keys,
    so it ends up in `extra` under its source key: nothing crashes, nothing is lost. Null and
    absent mean the same for a known key: the column stays NULL.
    """
    rest: dict[str, Any] | None = None
    for key, value in obj.items():
        spec = fields.get(key)
        if spec is not None:
            if value is None:
                continue
            at, kind = spec
            cls = value.__class__
            if kind == TEXT:
                if cls is str:
                    row[at] = value
                    continue
            elif kind == TIME:
                row[at] = parse_time(value, key)
                continue
            elif kind == INT:
                if cls is int and INT_MIN <= value <= INT_MAX:
                    row[at] = value
                    continue
            elif kind == BOOL:
                if cls is bool:
                    row[at] = value
                    continue
            elif kind == JSON:
                row[at] = value
                continue
            elif kind == SKIP:
                continue
            elif value == tag:  # TAG
                continue
        if rest is None:
            rest = {}
        rest[key] = value
    return rest


def _compiled() -> Any:
    """The compiled project() (etl/normalize/_cproject.c), or None when it is not built."""
    _cproject = accelerator("etl.normalize._cproject")
    if _cproject is None:
        return None
    _cproject.configure(parse_time, project_py, BadField)
    return _cproject.project


# The compiled version is the same function (tests compare both on random input), ~5x faster.
COMPILED: Final = _compiled()
project: Final = COMPILED or project_py
