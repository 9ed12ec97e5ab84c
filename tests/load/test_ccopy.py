"""The compiled COPY formatters write exactly the bytes of the Python reference formatters
(text and binary), and fail on the same values."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etl.load.copyformat import (
    compiled_binary_formatters,
    compiled_formatters,
    python_binary_formatters,
    python_formatters,
)
from etl.normalize import TABLE_COLUMNS, normalize_conversation
from tests.conftest import SEED_EXPORT, needs_accelerator

_compiled = {plain: compiled_formatters(plain) for plain in (False, True)}
_python = {plain: python_formatters(plain) for plain in (False, True)}
_compiled_binary = {plain: compiled_binary_formatters(plain) for plain in (False, True)}
_python_binary = {plain: python_binary_formatters(plain) for plain in (False, True)}

pytestmark = needs_accelerator(_compiled[False] is not None)


def test_ci_builds_the_extension() -> None:
    assert _compiled[False] is not None, "etl/load/_ccopy.c was not built: run make install"


def _same(table: str, rows: list[tuple[Any, ...]], plain: bool, binary: bool = False) -> None:
    if not binary:
        compiled = _compiled[plain]
        assert compiled is not None
        assert compiled[table](rows) == _python[plain][table](rows)
        return
    compiled_binary = _compiled_binary[plain]
    assert compiled_binary is not None
    if table == "conversations":  # binary rows carry content_hash (see _binary_layout)
        rows = [(*row, "0123abcd") for row in rows]
    assert compiled_binary[table](rows) == _python_binary[plain][table](rows)


_text = st.text(st.sampled_from(["a", "\\", "\t", "\n", "\r", "é", "😀", "N", " "]), max_size=6)
_offsets = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
_times = (
    st.datetimes(timezones=st.just(UTC))
    | st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 1, 1), timezones=_offsets)
    | st.datetimes()  # naive: text writes isoformat(); binary refuses it (tested below)
)
_aware_times = st.datetimes(timezones=st.just(UTC)) | st.datetimes(
    min_value=datetime(2, 1, 1), max_value=datetime(9998, 1, 1), timezones=_offsets
)


def _json(big_ints: bool) -> st.SearchStrategy[Any]:
    ints = st.integers(-(2**70), 2**70) if big_ints else st.integers(-(2**63), 2**63 - 1)
    return st.recursive(
        st.none() | st.booleans() | ints | st.floats(allow_nan=False, allow_infinity=False) | _text,
        lambda c: st.lists(c, max_size=3) | st.dictionaries(_text, c, max_size=3),
        max_leaves=8,
    )


def _kind(table: str, column: str) -> str:
    from etl.load.copyformat import _kinds

    return _kinds(table)[TABLE_COLUMNS[table].index(column)]


def _column_values(kind: str, plain: bool, binary: bool = False) -> st.SearchStrategy[Any]:
    base = kind.rstrip("!")
    values: st.SearchStrategy[Any] = {
        "text": _text,
        "int": st.integers(-(2**63), 2**63 - 1),
        "int4": st.integers(-(2**31), 2**31 - 1),
        "bool": st.booleans(),
        "time": _aware_times if binary else _times,
        "json": _json(big_ints=not plain),
    }[base]
    return values if kind.endswith("!") else st.none() | values


@st.composite
def _rows(draw: st.DrawFn, plain: bool, binary: bool = False) -> tuple[str, list[tuple[Any, ...]]]:
    table = draw(st.sampled_from(sorted(TABLE_COLUMNS)))
    kinds = [_kind(table, column) for column in TABLE_COLUMNS[table]]
    row = st.tuples(*(_column_values(kind, plain, binary) for kind in kinds))
    return table, draw(st.lists(row, max_size=4))


@settings(max_examples=200, deadline=None)
@given(_rows(plain=False, binary=True))
def test_compiled_binary_rows_match_python_with_the_stdlib_json_encoder(
    drawn: tuple[str, list[tuple[Any, ...]]],
) -> None:
    _same(*drawn, plain=False, binary=True)


@settings(max_examples=200, deadline=None)
@given(_rows(plain=True, binary=True))
def test_compiled_binary_rows_match_python_with_orjson(
    drawn: tuple[str, list[tuple[Any, ...]]],
) -> None:
    _same(*drawn, plain=True, binary=True)


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
            _same(table, rows, plain=normalized.plain, binary=True)


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


def test_ci_builds_the_binary_formatter() -> None:
    assert _compiled_binary[False] is not None, "etl/load/_ccopy.c was not built: run make install"


def _fails_alike(table: str, row: tuple[Any, ...], error: type[BaseException]) -> None:
    compiled = _compiled_binary[False]
    assert compiled is not None
    for formatters in (compiled, _python_binary[False]):
        with pytest.raises(error):
            formatters[table]([row])


def test_binary_values_that_cannot_be_copied_fail_like_the_python_formatter() -> None:
    button = (1, 2, 3, 4, None, None, "ok", None, None, None, None)
    assert len(button) == len(TABLE_COLUMNS["buttons"])
    _fails_alike("buttons", (*button[:6], "\ud800", *button[7:]), UnicodeEncodeError)
    _fails_alike("buttons", (*button[:6], 5, *button[7:]), TypeError)  # int in a text column
    _fails_alike("buttons", ("1", *button[1:]), TypeError)  # str in a bigint column
    _fails_alike("buttons", (True, *button[1:]), TypeError)  # PostgreSQL refused it as text
    _fails_alike("buttons", (None, *button[1:]), TypeError)  # None in the key
    _fails_alike("buttons", (2**63, *button[1:]), OverflowError)
    _fails_alike("buttons", (1, 2**31, *button[2:]), OverflowError)  # int4 column
    message = [None] * len(TABLE_COLUMNS["messages"])
    message[:3] = [1, 2, 0]
    at = TABLE_COLUMNS["messages"].index("time")
    message[at] = datetime(2024, 1, 1)  # naive: refused, it would shift silently
    _fails_alike("messages", tuple(message), TypeError)
    message[at] = "2024-01-01T00:00:00Z"
    _fails_alike("messages", tuple(message), TypeError)


def test_binary_timestamps_count_microseconds_from_2000_utc() -> None:
    compiled = _compiled_binary[False]
    assert compiled is not None
    at = TABLE_COLUMNS["intents"].index("last_seen_at")
    cases = [  # a list: equal instants in other zones would collapse as dict keys
        (datetime(2000, 1, 1, tzinfo=UTC), 0),
        (datetime(2000, 1, 1, 1, tzinfo=timezone(timedelta(hours=1))), 0),
        (datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), -1),
        (datetime(2024, 2, 29, 12, 0, 0, 5, tzinfo=UTC), 762_523_200_000_005),
        (datetime(1, 1, 1, tzinfo=UTC), -63_082_281_600_000_000),
    ]
    for when, micros in cases:
        row = [None] * len(TABLE_COLUMNS["intents"])
        row[0], row[at] = 1, when
        for formatters in (compiled, _python_binary[False]):
            data = formatters["intents"]([tuple(row)])
            offset = 2 + 4 + 8 + 4 + 4  # field count, id, title (NULL), inherit_skill (NULL)
            assert data[offset : offset + 4] == b"\x00\x00\x00\x08"
            assert int.from_bytes(data[offset + 4 : offset + 12], "big", signed=True) == micros
