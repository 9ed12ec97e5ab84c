"""Rows as they cross from the extract worker to the loading process (normalize.wire)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from etl.normalize import TABLE_COLUMNS, NormalizedConversation, normalize_conversation
from etl.normalize.columns import TIME_COLUMNS
from etl.normalize.wire import decoded, encoded
from tests.conftest import SEED_EXPORT
from tests.normalize.test_lossless import conversations


def _as_lists(nc: NormalizedConversation) -> dict[str, list[list[Any]]]:
    return {table: [list(row) for row in rows] for table, rows in nc.rows.items()}


def _check(conv: dict[str, Any], *, keep_raw: bool = False) -> NormalizedConversation:
    nc = normalize_conversation(conv, keep_raw=keep_raw)
    if not nc.plain:  # it crosses as its text
        with pytest.raises(ValueError, match="not plain"):
            encoded(nc)
        return nc
    assert decoded(encoded(nc)) == _as_lists(nc)
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


def test_a_conversation_that_is_not_plain_is_refused() -> None:
    """Its text crosses instead: orjson would not write its integer (nor a cleaned text)."""
    assert not _check({"id": 1, "messages": [], "user_information": {"n": 2**70}}).plain
