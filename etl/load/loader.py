"""Merging a window's conversations into the warehouse: the rule and the interface, once.

`WindowLoader` is what the runner talks to; `etl/load/postgres.py` and `etl/load/sqlite.py`
each implement its database side whole. A window goes through it batch by batch, inside the
caller's transaction:

    loader.merge(normalized)               # each batch: drops the unchanged, loads the rest
    ...
    loader.finish()                        # once, before the commit
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import Connection, MetaData

from etl.normalize import (
    CHILD_TABLES,
    DIMENSION_TABLES,
    TABLE_COLUMNS,
    NormalizedConversation,
    NormalizeError,
)
from etl.normalize.digest import TOO_DEEP

Row = tuple[Any, ...]
Stored = tuple[str, datetime | None]  # a stored conversation's content_hash and exported_at

# Columns the loader adds to each `conversations` row after the normalizer's.
LOAD_COLUMNS: Final = ("content_hash", "exported_at", "loaded_at", "load_run_id")
CONVERSATION_COLUMNS: Final = TABLE_COLUMNS["conversations"] + LOAD_COLUMNS

_SEEN_AT: Final = {table: TABLE_COLUMNS[table].index("last_seen_at") for table in DIMENSION_TABLES}


def replaces(exported_at: datetime, content_hash: str, stored: Stored | None) -> bool:
    """Whether an incoming conversation replaces the stored copy.

    Only when it differs, and the stored copy is from an older (or the same) export: re-loading
    a window changes no row, and an old window loaded after a newer one never brings stale
    data back.
    """
    if stored is None:
        return True
    stored_hash, stored_exported_at = stored
    if stored_hash == content_hash:
        return False
    return stored_exported_at is None or exported_at >= stored_exported_at


def latest_per_id(rows: list[Row], seen_at: int) -> list[Row]:
    """Dimension rows, one per id: the latest `last_seen_at` wins, the later row on a tie."""
    if len(rows) < 2:
        return rows
    latest: dict[Any, Row] = {}
    for row in rows:
        current = latest.get(row[0])
        if current is None or _later_or_equal(row[seen_at], current[seen_at]):
            latest[row[0]] = row
    return list(latest.values())


def _later_or_equal(a: datetime | None, b: datetime | None) -> bool:
    if a is None:
        return b is None
    return b is None or a >= b


class WindowLoader(ABC):
    """Merges a window's conversations, batch by batch, inside the caller's transaction.

    A stored conversation is replaced only when `replaces` says so; its child rows are
    replaced wholesale (deleted by conversation_id, then inserted), and the dimension rows its
    messages carry are upserted, the latest seen winning.
    """

    def __init__(
        self, conn: Connection, metadata: MetaData, *, run_id: str, exported_at: datetime
    ) -> None:
        self._conn = conn
        self._tables = {
            name: metadata.tables[f"{metadata.schema}.{name}" if metadata.schema else name]
            for name in TABLE_COLUMNS
        }
        self._schema = metadata.schema
        self._run_id = run_id
        self._exported_at = exported_at.astimezone(UTC)
        self.rows: dict[str, int] = dict.fromkeys(TABLE_COLUMNS, 0)
        self.changed_count = 0
        self.unchanged_count = 0

    def merge(self, batch: Sequence[NormalizedConversation]) -> None:
        """Load the conversations of a batch (ids unique within it) that `replaces` lets in."""
        flags = self.changed(batch)
        self.load([c for c, load in zip(batch, flags, strict=True) if load])

    def changed(self, batch: Sequence[NormalizedConversation]) -> list[bool]:
        """Which conversations of a batch (ids unique within it) must be loaded."""
        if not batch:
            return []
        stored = self._stored([c.id for c in batch])
        exported_at = self._exported_at
        flags = [replaces(exported_at, c.content_hash, stored.get(c.id)) for c in batch]
        self.unchanged_count += len(flags) - sum(flags)
        return flags

    def load(self, batch: Sequence[NormalizedConversation]) -> None:
        """Replace what is stored for these conversations (ids unique within the batch)."""
        if not batch:
            return
        try:
            self._replace(batch)
        except RecursionError:
            # Only a conversation that is not plain is encoded with the stdlib (orjson refuses
            # JSON nested deeper than 255 levels), whose recursion depends on the stack.
            suspects = [c.id for c in batch if not c.plain]
            culprit = suspects[0] if len(suspects) == 1 else None
            raise NormalizeError(TOO_DEEP, conversation_id=culprit) from None

    def _replace(self, batch: Sequence[NormalizedConversation]) -> None:
        self.changed_count += len(batch)
        # Every id, stored or not: rows left by a conversation deleted by hand (there are no
        # foreign keys) must not block its reload.
        self._delete([c.id for c in batch])
        plain = all(c.plain for c in batch)
        suffix = (self._exported_at, datetime.now(UTC), self._run_id)
        conversations = [
            (*row, c.content_hash, *suffix) for c in batch for row in c.rows["conversations"]
        ]
        self._insert("conversations", conversations, plain)
        for table in CHILD_TABLES:
            self._insert(table, [row for c in batch for row in c.rows[table]], plain)
        for table in DIMENSION_TABLES:
            rows = latest_per_id([row for c in batch for row in c.rows[table]], _SEEN_AT[table])
            if rows:
                self._merge_dimension(table, rows, plain=plain)
                self.rows[table] += len(rows)

    @abstractmethod
    def finish(self) -> None:
        """Anything the batches left to do; once, after the last batch, before the commit."""

    def _insert(self, table: str, rows: list[Row], plain: bool) -> None:
        if rows:
            self._write(table, rows, plain=plain)
            self.rows[table] += len(rows)

    @abstractmethod
    def _stored(self, ids: list[int]) -> dict[int, Stored]:
        """The stored content_hash and exported_at of those of `ids` that are stored."""

    @abstractmethod
    def _delete(self, ids: list[int]) -> None:
        """Delete the conversations and their child rows."""

    @abstractmethod
    def _write(self, table: str, rows: list[Row], *, plain: bool) -> None:
        """Insert rows (in TABLE_COLUMNS order; `conversations` with LOAD_COLUMNS too).

        `plain`: every JSON value is plain JSON that orjson encodes exactly.
        """

    @abstractmethod
    def _merge_dimension(self, table: str, rows: list[Row], *, plain: bool) -> None:
        """Upsert dimension rows (one per id): a row replaces a stored one seen no later."""


def open_loader(
    conn: Connection, metadata: MetaData, *, run_id: str, exported_at: datetime
) -> WindowLoader:
    """The loader for the warehouse `conn` is connected to."""
    from etl.load.postgres import PostgresLoader
    from etl.load.sqlite import SQLiteLoader

    loaders: dict[str, type[WindowLoader]] = {
        "postgresql": PostgresLoader,
        "sqlite": SQLiteLoader,
    }
    return loaders[conn.dialect.name](conn, metadata, run_id=run_id, exported_at=exported_at)
