"""Rows as they cross from the extract worker to the loading process (normalize.wire)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings

from etl.normalize import TABLE_COLUMNS, NormalizedConversation, normalize_conversation
from etl.normalize.columns import TIME_COLUMNS
from etl.normalize.wire import decoded, encoded
from tests.conftest import SEED_EXPORT
from tests.normalize.test_lossless import conversations


def _check(conv: dict[str, Any], *, keep_raw: bool = False) -> NormalizedConversation:
    nc = normalize_conversation(conv, keep_raw=keep_raw)
    if not nc.plain:  # it crosses as its text
        with pytest.raises(ValueError, match="not plain"):
            encoded(nc)
        return nc
    assert decoded(encoded(nc)) == nc.rows
    # The time columns are the only ones whose values the text changes (see decoded).
    for table, rows in nc.rows.items():
        for row in rows:
            for column, value in zip(TABLE_COLUMNS[table], row, strict=True):
                assert isinstance(value, datetime) == (
                    column in TIME_COLUMNS and value is not None
                ), (table, column, value)
    return nc


def test_the_documented_example_crosses_unchanged() -> None:
    conversation = json.loads(SEED_EXPORT.read_text())[1]
    assert _check(conversation).plain
    assert _check(conversation, keep_raw=True).plain


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conversations())
def test_random_conversations_cross_unchanged(conv: dict[str, Any]) -> None:
    _check(conv)


def test_the_simulators_conversations_cross_unchanged(sim_dataset: Any) -> None:
    """Every table, with datetimes in all four time columns, in realistic shapes."""
    for index in range(len(sim_dataset)):
        nc = _check(orjson.loads(sim_dataset.payload(index)))
        assert nc.plain and nc.rows["messages"] and nc.rows["content"]


def test_rows_nested_deeper_than_orjson_writes_are_refused() -> None:
    """Plain as a conversation, but its unknown key sits deeper in `extra`: the worker then
    sends the conversation's text instead."""
    deep: Any = []
    for _ in range(252):
        deep = [deep]
    nc = normalize_conversation({"id": 1, "messages": [], "surprise": deep}, keep_raw=True)
    assert nc.plain
    with pytest.raises(orjson.JSONEncodeError):
        encoded(nc)


def test_a_conversation_that_is_not_plain_is_refused() -> None:
    """Its text crosses instead: orjson would not write its integer (nor a cleaned text)."""
    assert not _check({"id": 1, "messages": [], "user_information": {"n": 2**70}}).plain
