"""The compiled COPY formatters write exactly the bytes of the Python reference formatters."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etl.load.copytext import compiled_formatters, python_formatters
from etl.normalize import TABLE_COLUMNS, normalize_conversation
from tests.conftest import SEED_EXPORT, needs_accelerator

_compiled = {plain: compiled_formatters(plain) for plain in (False, True)}
_python = {plain: python_formatters(plain) for plain in (False, True)}

pytestmark = needs_accelerator(_compiled[False] is not None)


def test_ci_builds_the_extension() -> None:
    assert _compiled[False] is not None, "etl/load/_ccopy.c was not built: run make install"


def _same(table: str, rows: list[tuple[Any, ...]], plain: bool) -> None:
    compiled = _compiled[plain]
    assert compiled is not None
    assert compiled[table](rows) == _python[plain][table](rows)


_text = st.text(st.sampled_from(["a", "\\", "\t", "\n", "\r", "é", "😀", "N", " "]), max_size=6)
_offsets = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
_times = (
    st.datetimes(timezones=st.just(UTC))
    | st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 1, 1), timezones=_offsets)
    | st.datetimes()  # naive: written by isoformat(), like the Python formatter
)


def _json(big_ints: bool) -> st.SearchStrategy[Any]:
    ints = st.integers(-(2**70), 2**70) if big_ints else st.integers(-(2**63), 2**63 - 1)
    return st.recursive(
        st.none() | st.booleans() | ints | st.floats(allow_nan=False, allow_infinity=False) | _text,
        lambda c: st.lists(c, max_size=3) | st.dictionaries(_text, c, max_size=3),
        max_leaves=8,
    )


def _kind(table: str, column: str) -> str:
    from etl.load.copytext import _kinds

    return _kinds(table)[TABLE_COLUMNS[table].index(column)]


def _column_values(kind: str, plain: bool) -> st.SearchStrategy[Any]:
    base = kind.rstrip("!")
    values: st.SearchStrategy[Any] = {
        "text": _text,
        "int": st.integers(-(2**63), 2**63 - 1),
        "bool": st.booleans(),
        "time": _times,
        "json": _json(big_ints=not plain),
    }[base]
    return values if kind.endswith("!") else st.none() | values


@st.composite
def _rows(draw: st.DrawFn, plain: bool) -> tuple[str, list[tuple[Any, ...]]]:
    table = draw(st.sampled_from(sorted(TABLE_COLUMNS)))
    kinds = [_kind(table, column) for column in TABLE_COLUMNS[table]]
    row = st.tuples(*(_column_values(kind, plain) for kind in kinds))
    return table, draw(st.lists(row, max_size=4))


@settings(max_examples=250, deadline=None)
@given(_rows(plain=False))
def test_compiled_rows_match_python_with_the_stdlib_json_encoder(
    drawn: tuple[str, list[tuple[Any, ...]]],
) -> None:
    _same(*drawn, plain=False)


@settings(max_examples=250, deadline=None)
@given(_rows(plain=True))
def test_compiled_rows_match_python_with_orjson(drawn: tuple[str, list[tuple[Any, ...]]]) -> None:
    _same(*drawn, plain=True)


def test_the_documented_example_formats_the_same() -> None:
    export = json.loads(SEED_EXPORT.read_text())
    conversations = [item for item in export if item.get("type") == "conversation"]
    assert conversations
    for conversation in conversations:
        normalized = normalize_conversation(conversation)
        for table, rows in normalized.rows.items():
            _same(table, rows, plain=normalized.plain)


def test_values_that_cannot_be_copied_fail_like_the_python_formatter() -> None:
    compiled = _compiled[False]
    assert compiled is not None
    surrogate = [(1, 2, 3, 4, None, None, "\ud800", None, None, None, None)]
    for formatters in (compiled, _python[False]):
        with pytest.raises(UnicodeEncodeError):
            formatters["buttons"](surrogate)
    for formatters in (compiled, _python[False]):
        with pytest.raises(TypeError):
            formatters["buttons"]([(1, 2, 3, 4, None, None, 5, None, None, None, None)])
