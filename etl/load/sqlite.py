"""The SQLite loader: chunked deletes, batched inserts and upserts through SQLAlchemy Core."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import JSON, Table, Text, bindparam, delete, select
from sqlalchemy.dialects.sqlite import insert

from etl.load.loader import (
    WRITTEN_COLUMNS,
    Row,
    Stored,
    WindowLoader,
    chunks,
    dimension_updates,
)
from etl.normalize import CHILD_TABLES
from etl.testhooks import pause_point

# JSON columns hold this text: compact, non-ASCII kept, NaN refused (it is not JSON).
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


class SQLiteLoader(WindowLoader):
    """Merges batches with chunked statements and batched inserts; one upsert per dimension."""

    concurrent_windows = False

    def _hold_off_erasures(self) -> None:
        """Nothing to hold: `etl forget` writes in a transaction of its own, which waits for
        this one's (BEGIN IMMEDIATE)."""

    def wait_for_windows(self) -> None:
        """Nothing to wait for: this write transaction began after every other one ended."""

    def _lock_for_writing(self, ids: list[int], stored: dict[int, Stored]) -> dict[int, Stored]:
        """What `_stored` read: a SQLite write transaction holds the whole database from its
        start (BEGIN IMMEDIATE), so nothing changed since."""
        return {i: stored[i] for i in ids if i in stored}

    def _release(self, ids: list[int]) -> None:
        """Nothing to let go: a SQLite write transaction holds the whole database (BEGIN
        IMMEDIATE), so `_stored` needs no row locks."""

    def _stored(self, ids: list[int]) -> dict[int, Stored]:
        table = self._tables["conversations"]
        found: dict[int, Stored] = {}
        for chunk in chunks(ids):
            query = select(table.c.id, table.c.content_hash, table.c.exported_at).where(
                table.c.id.in_(chunk)
            )
            for row in self._conn.execute(query):
                found[row.id] = (row.content_hash, row.exported_at)
        return found

    def _message_owners(self, message_ids: list[int]) -> dict[int, int]:
        table = self._tables["messages"]
        owners: dict[int, int] = {}
        for chunk in chunks(message_ids):
            query = select(table.c.id, table.c.conversation_id).where(table.c.id.in_(chunk))
            owners.update((row.id, row.conversation_id) for row in self._conn.execute(query))
        return owners

    def _delete(self, ids: list[int]) -> None:
        for name in (*CHILD_TABLES, "conversations"):
            table = self._tables[name]
            column = table.c.id if name == "conversations" else table.c.conversation_id
            for chunk in chunks(ids):
                self._conn.execute(delete(table).where(column.in_(chunk)))

    def _write(self, table: str, rows: list[Row], *, plain: bool) -> None:
        columns = WRITTEN_COLUMNS[table]
        target = self._tables[table]
        json_at = _json_positions(target, columns)
        if json_at:
            rows = [_with_json_text(row, json_at) for row in rows]
        # JSON is text already: bound as plain text so that it is not encoded twice.
        statement = target.insert().values(
            {c: bindparam(c, type_=_bind_type(target, c)) for c in columns}
        )
        self._conn.execute(statement, [dict(zip(columns, row, strict=True)) for row in rows])
        pause_point("mid-copy")  # tests only: ETL_TEST_PAUSE_AT

    def _upsert_dimension(self, table: str, rows: list[Row], *, plain: bool) -> None:
        columns = WRITTEN_COLUMNS[table]
        target = self._tables[table]
        statement = insert(target)
        statement = statement.on_conflict_do_update(
            index_elements=[target.c.id], set_=dimension_updates(target, statement.excluded)
        )
        self._conn.execute(statement, [dict(zip(columns, row, strict=True)) for row in rows])


def _json_positions(table: Table, columns: Sequence[str]) -> tuple[int, ...]:
    return tuple(i for i, name in enumerate(columns) if isinstance(table.c[name].type, JSON))


def _with_json_text(row: Row, positions: tuple[int, ...]) -> Row:
    values = list(row)
    for i in positions:
        if values[i] is not None:
            values[i] = _dumps(values[i])
    return tuple(values)


def _bind_type(table: Table, column: str) -> Any:
    return Text() if isinstance(table.c[column].type, JSON) else table.c[column].type
