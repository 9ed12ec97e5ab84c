"""The window writer: batches normalized conversations and merges each batch set-wise."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Connection, MetaData, Table, bindparam, delete, select
from sqlalchemy.dialects import postgresql, sqlite

from etl.load.batch import CHILD_TABLES, DIMENSION_TABLES, EncodedBatch, latest_per_id
from etl.load.copyformat import LOAD_COLUMNS
from etl.load.pgload import PgBatchLoader, Stored, replaces
from etl.normalize import TABLE_COLUMNS, NormalizedConversation
from etl.testhooks import pause_point

# SQLite's default limit on bound variables is 32766 since 3.32; stay far below it.
_SQLITE_IN_CHUNK = 900


def _dump_json(value: Any) -> str | None:
    if value is None:
        return None
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


class WindowWriter:
    """Merges conversations into the tables inside the caller's transaction.

    A conversation replaces what is stored for it only when the stored copy came from an
    older (or the same) export and differs: re-loading a window changes no row, and loading
    an old window after a newer one cannot bring stale data back.
    """

    def __init__(
        self,
        conn: Connection,
        metadata: MetaData,
        *,
        run_id: str,
        exported_at: datetime,
        batch_size: int = 500,
    ) -> None:
        self._conn = conn
        self._tables = {
            name: metadata.tables[f"{metadata.schema}.{name}" if metadata.schema else name]
            for name in TABLE_COLUMNS
        }
        self._postgres = conn.dialect.name == "postgresql"
        self._run_id = run_id
        self._exported_at = exported_at.astimezone(UTC)
        self._batch_size = batch_size
        self._batch: dict[int, NormalizedConversation] = {}
        self._json_positions = {name: self._json_columns(name) for name in TABLE_COLUMNS}
        self._rows: dict[str, int] = dict.fromkeys(TABLE_COLUMNS, 0)
        self._changed = 0
        self._unchanged = 0
        self._pg: PgBatchLoader | None = None
        if self._postgres:
            raw = conn.connection.driver_connection
            assert raw is not None
            self._pg = PgBatchLoader(raw, metadata.schema, run_id=run_id, exported_at=exported_at)

    @property
    def accepts_encoded(self) -> bool:
        """Whether `decide` and `load_decided` work here (PostgreSQL)."""
        return self._pg is not None

    @property
    def rows(self) -> dict[str, int]:
        return self._pg.rows if self._pg is not None else self._rows

    @property
    def conversations_changed(self) -> int:
        return self._pg.conversations_changed if self._pg is not None else self._changed

    @property
    def conversations_unchanged(self) -> int:
        return self._pg.conversations_unchanged if self._pg is not None else self._unchanged

    def decide(self, batch: Sequence[tuple[int, str]]) -> list[bool]:
        """PostgreSQL only: which `(id, content_hash)` must be loaded (see PgBatchLoader.decide)."""
        assert self._pg is not None
        return self._pg.decide(batch)

    def load_decided(self, changed: EncodedBatch) -> None:
        """PostgreSQL only: merge the encoded conversations `decide` marked as changed."""
        assert self._pg is not None
        self._pg.load_decided(changed)

    def _json_columns(self, name: str) -> tuple[int, ...]:
        table = self._tables[name]
        return tuple(
            i for i, col in enumerate(TABLE_COLUMNS[name]) if isinstance(table.c[col].type, JSON)
        )

    def add(self, conversation: NormalizedConversation) -> None:
        # A later copy of the same conversation in this window wins.
        self._batch.pop(conversation.id, None)
        self._batch[conversation.id] = conversation
        if len(self._batch) >= self._batch_size:
            self._flush_batch()

    def add_all(self, conversations: Iterable[NormalizedConversation]) -> None:
        for conversation in conversations:
            self.add(conversation)

    def flush(self) -> None:
        """Write what is left of the window; call once at its end, before the commit."""
        self._flush_batch()
        if self._pg is not None:
            self._pg.finish()

    def _flush_batch(self) -> None:
        if not self._batch:
            return
        batch, self._batch = list(self._batch.values()), {}
        if self._pg is not None:
            self._pg.load(batch)
            return
        stored = self._stored(tuple(c.id for c in batch))
        changed = [
            c for c in batch if replaces(self._exported_at, c.content_hash, stored.get(c.id))
        ]
        self._unchanged += len(batch) - len(changed)
        if not changed:
            return
        self._changed += len(changed)
        ids = [c.id for c in changed]
        for name in (*CHILD_TABLES, "conversations"):
            self._delete(name, ids)
        loaded_at = datetime.now(UTC)
        extra = (self._exported_at, loaded_at, self._run_id)
        self._insert(
            "conversations",
            [(*row, c.content_hash, *extra) for c in changed for row in c.rows["conversations"]],
            TABLE_COLUMNS["conversations"] + LOAD_COLUMNS,
        )
        for name in CHILD_TABLES:
            self._insert(name, [row for c in changed for row in c.rows[name]], TABLE_COLUMNS[name])
        for name in DIMENSION_TABLES:
            self._upsert_dimension(name, [row for c in changed for row in c.rows[name]])

    def _stored(self, ids: Sequence[int]) -> dict[int, Stored]:
        table = self._tables["conversations"]
        found: dict[int, Stored] = {}
        for chunk in self._chunks(ids):
            query = select(table.c.id, table.c.content_hash, table.c.exported_at).where(
                table.c.id.in_(chunk)
            )
            for row in self._conn.execute(query):
                exported = row.exported_at
                if exported is not None and exported.tzinfo is None:
                    exported = exported.replace(tzinfo=UTC)
                found[row.id] = (row.content_hash, exported)
        return found

    def _chunks(self, ids: Sequence[int]) -> Iterable[Sequence[int]]:
        if self._postgres:
            yield ids
            return
        for start in range(0, len(ids), _SQLITE_IN_CHUNK):
            yield ids[start : start + _SQLITE_IN_CHUNK]

    def _delete(self, name: str, ids: Sequence[int]) -> None:
        table = self._tables[name]
        column = table.c.id if name == "conversations" else table.c.conversation_id
        for chunk in self._chunks(ids):
            self._conn.execute(delete(table).where(column.in_(chunk)))

    def _insert(self, name: str, rows: list[tuple[Any, ...]], columns: Sequence[str]) -> None:
        if not rows:
            return
        self._rows[name] += len(rows)
        positions = self._json_positions[name]
        if positions:
            rows = [_with_json_dumped(row, positions) for row in rows]
        self._executemany(self._tables[name], columns, rows)

    def _executemany(
        self, table: Table, columns: Sequence[str], rows: list[tuple[Any, ...]]
    ) -> None:
        # JSON is already text here; bind it as plain text so it is not encoded twice.
        params = [dict(zip(columns, row, strict=True)) for row in rows]
        statement = table.insert().values(
            {c: bindparam(c, type_=_bind_type(table, c)) for c in columns}
        )
        self._conn.execute(statement, params)
        pause_point("mid-copy")  # tests only: ETL_TEST_PAUSE_AT

    def _upsert_dimension(self, name: str, rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        columns = TABLE_COLUMNS[name]
        latest = latest_per_id(rows, columns.index("last_seen_at"))
        table = self._tables[name]
        dialect_insert = postgresql.insert if self._postgres else sqlite.insert
        statement = dialect_insert(table)
        updates = {c: statement.excluded[c] for c in columns if c != "id"}
        statement = statement.on_conflict_do_update(
            index_elements=[table.c.id],
            set_=updates,
            where=(table.c.last_seen_at.is_(None))
            | (statement.excluded.last_seen_at >= table.c.last_seen_at),
        )
        params = [dict(zip(columns, row, strict=True)) for row in latest]
        self._rows[name] += len(params)
        self._conn.execute(statement, params)


def _with_json_dumped(row: tuple[Any, ...], positions: tuple[int, ...]) -> tuple[Any, ...]:
    values = list(row)
    for i in positions:
        values[i] = _dump_json(values[i])
    return tuple(values)


def _bind_type(table: Table, column: str) -> Any:
    from sqlalchemy import Text

    return Text() if isinstance(table.c[column].type, JSON) else table.c[column].type
