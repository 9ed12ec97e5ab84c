"""A conversation's rows as bytes, for the pipe from the extract worker to the loading process.

The worker normalizes and the loading process merges, so rows cross between processes.
Pickling them is slow on both sides (a datetime is a call per value); orjson writes and reads
the same rows several times faster, and gives every value back exactly when the conversation
is plain (NormalizedConversation.plain), but for datetimes, which come back as ISO-8601 text
that `decoded` turns back into datetimes at the time columns. orjson also refuses JSON nested
deeper than its limit (255 levels), which a plain conversation's rows may reach where the
conversation itself did not (an unknown key sits two levels deeper in `extra`, the whole
conversation in `raw`): `encoded` then raises orjson.JSONEncodeError. A conversation that is not plain
(integers beyond 64 bits, text that was cleaned) or whose rows orjson refuses crosses as its
text instead, and the loading process normalizes it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

import orjson

from etl.normalize.columns import TABLE_COLUMNS, TIME_COLUMNS
from etl.normalize.core import NormalizedConversation, Row

Rows = dict[str, list[Row]]

_TABLES: Final = tuple(TABLE_COLUMNS)
_TIMES_AT: Final = tuple(
    tuple(i for i, column in enumerate(columns) if column in TIME_COLUMNS)
    for columns in TABLE_COLUMNS.values()
)
_fromisoformat = datetime.fromisoformat


def encoded(normalized: NormalizedConversation) -> bytes:
    """The rows of a plain conversation, as orjson's text of its tables' rows in TABLE_COLUMNS
    order."""
    if not normalized.plain:
        raise ValueError(f"conversation {normalized.id} is not plain: send its text instead")
    rows = normalized.rows
    return orjson.dumps([rows[table] for table in _TABLES])


def decoded(payload: bytes) -> Rows:
    """The rows `encoded` was given, from what it returned."""
    tables: list[list[list[Any]]] = orjson.loads(payload)
    decoded_rows: Rows = {}
    for table, rows, times_at in zip(_TABLES, tables, _TIMES_AT, strict=True):
        if times_at:
            for row in rows:
                for i in times_at:
                    value = row[i]
                    if value is not None:
                        row[i] = _fromisoformat(value)
        decoded_rows[table] = list(map(tuple, rows))  # rows are tuples (normalize.core.Row)
    return decoded_rows
