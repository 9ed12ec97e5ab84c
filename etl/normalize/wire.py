"""A conversation's rows as bytes, for the pipe from the extract worker to the loading process.

The worker normalizes and the loading process merges, so rows cross between processes.
Pickling them is slow on both sides (a datetime is a call per value); orjson writes and reads
the same rows several times faster, and gives every value back exactly when the conversation
is plain (NormalizedConversation.plain), with two differences: datetimes come back as ISO-8601
text, which `decoded` turns back into datetimes at the time columns, and a row comes back as a
list, which the loaders take as they take a tuple. A conversation that is not plain (integers
beyond 64 bits, text that was cleaned, JSON nested deeper than orjson writes) crosses as its
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
    for rows, times_at in zip(tables, _TIMES_AT, strict=True):
        if times_at:
            for row in rows:
                for i in times_at:
                    value = row[i]
                    if value is not None:
                        row[i] = _fromisoformat(value)
    return dict(zip(_TABLES, tables, strict=True))  # type: ignore[arg-type]
