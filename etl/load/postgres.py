"""The PostgreSQL loader: set-wise deletes, binary COPY through psycopg, one dimension upsert."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Final

import orjson
from psycopg import Cursor, sql
from psycopg.types.json import Jsonb, set_json_dumps
from sqlalchemy import JSON, Connection, MetaData, Table, column, select
from sqlalchemy import table as sa_table
from sqlalchemy.dialects import postgresql

from etl.load.engine import advisory_key
from etl.load.loader import WRITTEN_COLUMNS, Row, Stored, WindowLoader, dimension_updates
from etl.normalize import CHILD_TABLES, TABLE_COLUMNS
from etl.testhooks import pause_point

# JSON text for conversations that are not plain (integers beyond 64 bits, say), which orjson
# refuses: compact, non-ASCII kept, NaN refused (it is not JSON).
_stdlib_dumps = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), allow_nan=False, check_circular=False
).encode


# A statement for `_with_index_scans`: the cursor that runs it (and holds its result), the
# statement and its parameters.
Statement = tuple[Cursor[Any], sql.SQL | sql.Composed, Sequence[Any] | Mapping[str, Any] | None]


def _with_index_scans(*statements: Statement) -> None:
    """Run `statements`, in order, planned with the indexes whatever the statistics say.

    Without statistics (a fresh warehouse before autovacuum's first ANALYZE, or the rows this
    very transaction added) PostgreSQL estimates that `conversation_id = ANY(<a batch's ids>)`
    matches every row and scans each table in full, once per batch: a backfill's or a big window's
    cost then grows with the square of what it has loaded. The conversation_id indexes are
    always the right plan here. Scans are turned off for these statements only: the setting
    is kept aside on the server (`etl.seqscan`, local to the transaction) and set back right
    after, and everything goes in one pipeline, one round trip; each cursor then holds its
    statement's result. If a statement fails, the pipeline stops there and raises its error;
    the transaction is aborted and its rollback drops both settings.
    """
    conn = statements[0][0].connection
    with conn.pipeline():
        conn.execute("SELECT set_config('etl.seqscan', current_setting('enable_seqscan'), true)")
        conn.execute("SELECT set_config('enable_seqscan', 'off', true)")
        for cur, statement, params in statements:
            cur.execute(statement, params)
        conn.execute("SELECT set_config('enable_seqscan', current_setting('etl.seqscan'), true)")


def _bigint_array(ids: Iterable[int]) -> str:
    """`ids` in PostgreSQL's text form of an array, for a `%s::bigint[]` parameter.

    psycopg dumps a list one element at a time, in Python; a batch sends a few thousand ids
    (its conversations', its messages') per statement, which `str.join` writes in one call.
    """
    return "{" + ",".join(map(str, ids)) + "}"


class PostgresLoader(WindowLoader):
    """Merges batches with a few set-wise statements and binary COPYs per batch.

    Binary COPY with declared column types (psycopg's compiled `write_row`): the server parses
    no numbers or timestamps. The window's dimension rows are staged in a temporary table and
    upserted once, at its end.
    """

    concurrent_windows = True

    def __init__(
        self,
        conn: Connection,
        metadata: MetaData,
        *,
        run_id: str,
        exported_at: datetime | None,
        replace: bool = False,
        lock_wait: timedelta | None = None,
        erasing: bool = False,
    ) -> None:
        raw = conn.connection.driver_connection
        assert raw is not None
        self._raw = raw
        # Schemas are warehouses of their own: erasures in one do not hold up loads in another.
        # The schema the tables are in, also when the settings name none (the search path's).
        schema = metadata.schema
        if schema is None:
            with raw.cursor() as cur:
                cur.execute("SELECT current_schema()")
                row = cur.fetchone()
                schema = row[0] if row else ""
        self._erasure_gate = advisory_key(f"convo-etl erasure {schema}")
        if lock_wait is not None:
            # A window waits for the conversations another window holds only so long: a
            # holder frozen mid-window (SIGSTOP, a stuck machine) would hold them for ever.
            with raw.cursor() as cur:
                cur.execute(
                    "SELECT set_config('lock_timeout', %s, true)",
                    (f"{int(lock_wait.total_seconds() * 1000)}ms",),
                )
        super().__init__(
            conn,
            metadata,
            run_id=run_id,
            exported_at=exported_at,
            replace=replace,
            lock_wait=lock_wait,
            erasing=erasing,
        )
        self._types = {name: _copy_types(self._tables[name]) for name in TABLE_COLUMNS}
        self._json_at = {
            name: tuple(i for i, t in enumerate(types) if t == "jsonb")
            for name, types in self._types.items()
        }

    def _hold_off_erasures(self) -> None:
        with self._raw.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock_shared(%s)", (self._erasure_gate,))

    def wait_for_windows(self) -> None:
        with self._raw.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (self._erasure_gate,))

    def _name(self, table: str) -> sql.Composable:
        if self._schema:
            return sql.Identifier(self._schema, table)
        return sql.Identifier(table)

    def _stored(self, ids: list[int]) -> dict[int, Stored]:
        query = sql.SQL(
            "SELECT id, content_hash, exported_at FROM {} WHERE id = ANY(%s::bigint[])"
        ).format(self._name("conversations"))
        with self._raw.cursor() as cur:
            cur.execute(query, (_bigint_array(ids),))
            return {row[0]: (row[1], row[2]) for row in cur if row[1] != PLACEHOLDER_HASH}

    def _lock_for_writing(self, ids: list[int], stored: dict[int, Stored]) -> dict[int, Stored]:
        """Windows load in parallel, and two of them may carry the same conversation: the
        second to write it waits here for the first to commit, then reads what it committed,
        so `outcome` never compares with a copy about to be replaced (which would fail on the
        primary key, or keep an older export).

        The stored rows are locked first, in id order, and every other id gets a placeholder
        row (`content_hash` empty, never committed: `merge` replaces or deletes it), which is
        what another transaction writing it waits on: both statements in one round trip. An
        id another transaction inserted meanwhile (the insert waited for it to commit) is then
        locked and read as stored. A deadlock between two windows is retried like a lost one
        (runner.database_error).
        """
        wanted = (_bigint_array(sorted(ids)),)
        placeholders = sql.SQL(
            "INSERT INTO {} (id, content_hash, loaded_at, load_run_id) "
            "SELECT id, %s, now(), %s FROM unnest(%s::bigint[]) AS wanted(id) "
            "ORDER BY id ON CONFLICT (id) DO NOTHING RETURNING id"
        ).format(self._name("conversations"))
        with self._raw.cursor() as locking, self._raw.cursor() as inserting:
            _with_index_scans(
                (locking, self._locking_query(), wanted),
                (inserting, placeholders, (PLACEHOLDER_HASH, self._run_id, *wanted)),
            )
            locked = {row[0]: (row[1], row[2]) for row in locking}
            inserted = {row[0] for row in inserting}
        raced = [i for i in ids if i not in locked and i not in inserted]
        if raced:
            locked |= self._locked(raced)
        return {i: row for i, row in locked.items() if row[0] != PLACEHOLDER_HASH}

    def _locking_query(self) -> sql.Composed:
        return sql.SQL(
            "SELECT id, content_hash, exported_at FROM {} WHERE id = ANY(%s::bigint[]) "
            "ORDER BY id FOR UPDATE"
        ).format(self._name("conversations"))

    def _locked(self, ids: list[int]) -> dict[int, Stored]:
        """The stored rows of `ids`, locked (FOR UPDATE) in id order."""
        with self._raw.cursor() as cur:
            _with_index_scans((cur, self._locking_query(), (_bigint_array(ids),)))
            return {row[0]: (row[1], row[2]) for row in cur}

    def _release(self, ids: list[int]) -> None:
        statement = sql.SQL(
            "DELETE FROM {} WHERE id = ANY(%s::bigint[]) AND content_hash = %s"
        ).format(self._name("conversations"))
        with self._raw.cursor() as cur:
            cur.execute(statement, (_bigint_array(ids), PLACEHOLDER_HASH))

    def _forgotten(self, ids: list[int]) -> set[int]:
        # One statement with the ids as an array, where the generic one sends a bound
        # parameter per id.
        query = sql.SQL(
            "SELECT conversation_id FROM {} WHERE conversation_id = ANY(%s::bigint[])"
        ).format(self._name("etl_tombstones"))
        with self._raw.cursor() as cur:
            cur.execute(query, (_bigint_array(ids),))
            return {row[0] for row in cur}

    def _message_owners(self, message_ids: list[int]) -> dict[int, int]:
        # A join with the unnested array is planned as index lookups whatever the statistics
        # say (see _with_index_scans for what `id = ANY(...)` may do without them).
        query = sql.SQL(
            "SELECT m.id, m.conversation_id FROM unnest(%s::bigint[]) AS wanted(id) "
            "JOIN {} AS m ON m.id = wanted.id"
        ).format(self._name("messages"))
        with self._raw.cursor() as cur:
            cur.execute(query, (_bigint_array(message_ids),))
            return dict(cur.fetchall())

    def _delete(self, ids: list[int]) -> None:
        deletes = [
            sql.SQL("{} AS (DELETE FROM {} WHERE conversation_id = ANY(%(ids)s::bigint[]))").format(
                sql.Identifier(f"deleted_{table}"), self._name(table)
            )
            for table in CHILD_TABLES
        ]
        statement = sql.SQL("WITH {} DELETE FROM {} WHERE id = ANY(%(ids)s::bigint[])").format(
            sql.SQL(", ").join(deletes), self._name("conversations")
        )
        with self._raw.cursor() as cur:
            _with_index_scans((cur, statement, {"ids": _bigint_array(ids)}))

    def _write(self, table: str, rows: list[Row], *, plain: bool) -> None:
        self._copy(self._name(table), table, rows, plain)

    def _copy(self, target: sql.Composable, table: str, rows: list[Row], plain: bool) -> None:
        columns = WRITTEN_COLUMNS[table]
        statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
            target, sql.SQL(", ").join(map(sql.Identifier, columns))
        )
        json_at = self._json_at[table]
        if not plain and json_at:
            rows = [_with_stdlib_json(row, json_at) for row in rows]
        with self._raw.cursor() as cur:
            # orjson writes the same JSON values several times faster than the stdlib; jsonb
            # keeps the value, not the text, so the stored documents are the same.
            set_json_dumps(orjson.dumps, context=cur)
            with cur.copy(statement) as copy:
                copy.set_types(self._types[table])
                write_row = copy.write_row
                for row in rows:
                    write_row(row)
                pause_point("mid-copy")  # tests only: ETL_TEST_PAUSE_AT

    def _upsert_dimension(self, table: str, rows: list[Row], *, plain: bool) -> None:
        """COPY the window's folded rows into a temporary stage, then one upsert from it."""
        stage = f"etl_stage_{table}"
        columns = WRITTEN_COLUMNS[table]
        with self._raw.cursor() as cur:
            # Only the columns written: a column of the user's own (NOT NULL with a default,
            # say) keeps its default in the table instead of failing in the stage.
            cur.execute(
                sql.SQL(
                    "CREATE TEMP TABLE IF NOT EXISTS {} ON COMMIT DROP AS "
                    "SELECT {} FROM {} WITH NO DATA"
                ).format(
                    sql.Identifier(stage),
                    sql.SQL(", ").join(map(sql.Identifier, columns)),
                    self._name(table),
                )
            )
        self._copy(sql.Identifier(stage), table, rows, plain)
        target = self._tables[table]
        # In id order: two windows finishing at once lock shared dimension rows in one order.
        staged = select(sa_table(stage, *map(column, columns))).order_by(column("id"))
        statement = postgresql.insert(target).from_select(columns, staged)
        statement = statement.on_conflict_do_update(
            index_elements=[target.c.id], set_=dimension_updates(target, statement.excluded)
        )
        self._conn.execute(statement)
        with self._raw.cursor() as cur:
            cur.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(stage)))


# The content_hash of a placeholder row (see PostgresLoader._stored): no digest is empty.
PLACEHOLDER_HASH: Final = ""

_DIALECT: Final = postgresql.dialect()  # type: ignore[no-untyped-call]


def _copy_types(table: Table) -> list[str]:
    """The PostgreSQL type of each column a COPY into `table` sends, from the schema."""
    columns = WRITTEN_COLUMNS[table.name]
    return [_type_name(table.c[name].type) for name in columns]


def _type_name(type_: Any) -> str:
    if isinstance(type_, JSON):
        return "jsonb"
    # psycopg knows the names PostgreSQL's DDL uses ("bigint", "timestamp with time zone").
    return str(type_.compile(dialect=_DIALECT)).lower()


def _with_stdlib_json(row: Row, positions: tuple[int, ...]) -> Row:
    values = list(row)
    for i in positions:
        if values[i] is not None:
            values[i] = Jsonb(values[i], dumps=_stdlib_dumps)
    return tuple(values)
