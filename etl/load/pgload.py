"""PostgreSQL batch merge of encoded conversations: a few set-wise statements and COPYs a batch."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from psycopg import Connection, Cursor, sql

from etl.load.batch import CHILD_TABLES, DIMENSION_TABLES, EncodedBatch, encode_batch
from etl.load.copyformat import BINARY_HEADER, BINARY_TRAILER, LOAD_COLUMNS, loader_fields
from etl.normalize import TABLE_COLUMNS, NormalizedConversation
from etl.testhooks import pause_point

Stored = tuple[str, datetime | None]  # a stored conversation's content_hash and exported_at


def replaces(exported_at: datetime, content_hash: str, stored: Stored | None) -> bool:
    """Whether an incoming conversation replaces the stored copy (both warehouses' rule).

    Only when it differs, and the stored copy is from an older (or the same) export: an old
    window loaded after a newer one never brings stale data back.
    """
    if stored is None:
        return True
    stored_hash, stored_exported_at = stored
    if stored_hash == content_hash:
        return False
    return stored_exported_at is None or exported_at >= stored_exported_at


@contextmanager
def _index_scans_only(cur: Cursor[Any]) -> Iterator[None]:
    """Plan the statements inside with the indexes, whatever the statistics say.

    Without statistics (a fresh warehouse before autovacuum's first ANALYZE, or the rows this
    very transaction added) PostgreSQL estimates that `conversation_id = ANY(<500 ids>)` matches
    every row, and scans each table in full: once per batch, so a backfill's or a big window's
    cost grew with the square of what it had loaded (per-batch deletes went from 21 to 46 ms
    over 88 windows of 250 conversations). The conversation_id indexes are always the right
    plan here. The setting is restored right after; if the statement fails, the transaction is
    aborted and its rollback drops the setting (restoring it then would hide the error).
    """
    previous = cur.execute(
        "SELECT current_setting('enable_seqscan'), set_config('enable_seqscan', 'off', true)"
    ).fetchone()
    assert previous is not None
    yield
    cur.execute("SELECT set_config('enable_seqscan', %s, true)", (previous[0],))


class PgBatchLoader:
    """Merges batches of encoded conversations inside the caller's open transaction.

    Same rules as WindowWriter: a stored conversation is replaced only when it differs and the
    stored copy is from an older (or the same) export; its child rows are replaced wholesale.
    """

    def __init__(
        self, conn: Connection[Any], schema: str | None, *, run_id: str, exported_at: datetime
    ) -> None:
        self._conn = conn
        self._exported_at = exported_at.astimezone(UTC)
        self._run_id = run_id
        self._schema = schema
        self._staged = False
        self.rows: dict[str, int] = dict.fromkeys(TABLE_COLUMNS, 0)
        self.conversations_changed = 0
        self.conversations_unchanged = 0
        # Changed ids `decide` promised to load and `load` has not loaded yet, with their hash:
        # a later batch decided before an earlier one is loaded compares against these.
        self._pending: dict[int, str] = {}
        self._dimensions_staged = False

    def _name(self, table: str) -> sql.Composable:
        if self._schema:
            return sql.Identifier(self._schema, table)
        return sql.Identifier(table)

    def _columns(self, columns: Sequence[str]) -> sql.Composable:
        return sql.SQL(", ").join(sql.Identifier(c) for c in columns)

    def decide(self, batch: Sequence[tuple[int, str]]) -> list[bool]:
        """Which of a batch's `(id, content_hash)` (ids unique within it) must be loaded.

        For a producer that encodes only what changed: it must then `load_decided` exactly the
        conversations marked True, batches in the order they were decided. A batch may be
        decided before the previous one is loaded (that one's ids count as stored already).
        """
        if not batch:
            return []
        stored = self._stored([cid for cid, _ in batch])
        pending = self._pending
        flags = []
        for cid, content_hash in batch:
            promised = pending.get(cid)
            if promised is not None:  # stored by then, from this export: replaced if it differs
                changed = promised != content_hash
            else:
                changed = replaces(self._exported_at, content_hash, stored.get(cid))
            if changed:
                pending[cid] = content_hash
            flags.append(changed)
        self.conversations_unchanged += len(flags) - sum(flags)
        return flags

    def load_decided(self, changed: EncodedBatch) -> None:
        """Merge the conversations `decide` marked as changed (already encoded)."""
        pending = self._pending
        for c in changed.conversations:
            if pending.get(c.id) == c.content_hash:
                del pending[c.id]
        if changed.conversations:
            self._merge(changed)

    def load(self, batch: Sequence[NormalizedConversation]) -> None:
        """Merge one batch (ids unique within it; the caller keeps the later copy).

        Unchanged conversations are never encoded.
        """
        if not batch:
            return
        stored = self._stored([c.id for c in batch])
        changed = [
            c for c in batch if replaces(self._exported_at, c.content_hash, stored.get(c.id))
        ]
        self.conversations_unchanged += len(batch) - len(changed)
        if changed:
            self._merge(encode_batch(changed))

    def finish(self) -> None:
        """Upsert the dimension rows the window's batches staged; once, before the commit.

        One upsert a window instead of one a batch: the stage keeps every batch's rows in
        order, so the same row wins (latest last_seen_at, the later row on a tie).
        """
        if not self._dimensions_staged:
            return
        for table in DIMENSION_TABLES:
            self._upsert_dimension(table)
        self._dimensions_staged = False

    def _merge(self, batch: EncodedBatch) -> None:
        changed = batch.conversations
        self.conversations_changed += len(changed)
        # Every changed id, stored or not: rows left by a conversation deleted by hand (there
        # are no foreign keys) must not block its reload. One statement for the five tables.
        with self._conn.cursor() as cur, _index_scans_only(cur):
            cur.execute(self._delete_statement(), {"ids": [c.id for c in changed]})
        binary = batch.binary
        suffix = loader_fields(self._exported_at, datetime.now(UTC), self._run_id, binary)
        self._copy(
            "conversations",
            TABLE_COLUMNS["conversations"] + LOAD_COLUMNS,
            [c.conversation + suffix for c in changed],
            binary,
        )
        self.rows["conversations"] += len(changed)
        for at, table in enumerate(CHILD_TABLES):
            self._copy(table, TABLE_COLUMNS[table], [c.children[at] for c in changed], binary)
            self.rows[table] += sum(c.child_rows[at] for c in changed)
        for at, table in enumerate(DIMENSION_TABLES):
            self._stage_dimension(table, batch.dimensions[at], len(batch.dimension_ids[at]), binary)

    def _stored(self, ids: list[int]) -> dict[int, Stored]:
        query = sql.SQL(
            "SELECT id, content_hash, exported_at FROM {} WHERE id = ANY(%s::bigint[])"
        ).format(self._name("conversations"))
        with self._conn.cursor() as cur:
            cur.execute(query, (ids,))
            return {row[0]: (row[1], row[2]) for row in cur}

    def _copy(
        self,
        table: str,
        columns: Sequence[str],
        chunks: list[bytes],
        binary: bool,
        target: Any = None,
    ) -> None:
        chunks = [c for c in chunks if c]
        if not chunks:
            return
        statement = sql.SQL("COPY {} ({}) FROM STDIN{}").format(
            target or self._name(table),
            self._columns(columns),
            sql.SQL(" (FORMAT binary)" if binary else ""),
        )
        if binary:
            chunks = [BINARY_HEADER, *chunks, BINARY_TRAILER]
        half = len(chunks) // 2
        with self._conn.cursor() as cur, cur.copy(statement) as copy:
            copy.write(b"".join(chunks[:half]))
            pause_point("mid-copy")  # tests only: ETL_TEST_PAUSE_AT
            copy.write(b"".join(chunks[half:]))

    def _stage_dimension(self, table: str, rows: bytes, count: int, binary: bool) -> None:
        if not rows:
            return
        if not self._staged:
            with self._conn.cursor() as cur:
                self._create_stages(cur)
        # The stage's `ord` numbers rows in window order: the later row wins a last_seen_at tie.
        self._copy(table, TABLE_COLUMNS[table], [rows], binary, target=self._stage(table))
        self._dimensions_staged = True
        self.rows[table] += count

    def _upsert_dimension(self, table: str) -> None:
        columns = TABLE_COLUMNS[table]
        stage = self._stage(table)
        updates = sql.SQL(", ").join(
            sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in columns if c != "id"
        )
        statement = sql.SQL(
            "INSERT INTO {target} AS t ({cols}) "
            "SELECT DISTINCT ON (id) {cols} FROM {stage} "
            "ORDER BY id, last_seen_at DESC NULLS LAST, ord DESC "
            "ON CONFLICT (id) DO UPDATE SET {updates} "
            "WHERE t.last_seen_at IS NULL OR EXCLUDED.last_seen_at >= t.last_seen_at"
        ).format(
            target=self._name(table), cols=self._columns(columns), stage=stage, updates=updates
        )
        with self._conn.cursor() as cur:
            cur.execute(statement)
            cur.execute(sql.SQL("TRUNCATE {}").format(stage))

    def _delete_statement(self) -> sql.Composed:
        deletes = [
            sql.SQL("{} AS (DELETE FROM {} WHERE conversation_id = ANY(%(ids)s::bigint[]))").format(
                sql.Identifier(f"deleted_{table}"), self._name(table)
            )
            for table in CHILD_TABLES
        ]
        return sql.SQL("WITH {} DELETE FROM {} WHERE id = ANY(%(ids)s::bigint[])").format(
            sql.SQL(", ").join(deletes), self._name("conversations")
        )

    def _stage(self, table: str) -> sql.Identifier:
        return sql.Identifier(f"etl_stage_{table}")

    def _create_stages(self, cur: Any) -> None:
        for table in DIMENSION_TABLES:
            cur.execute(
                sql.SQL(
                    "CREATE TEMP TABLE IF NOT EXISTS {} (LIKE {}, ord bigserial) ON COMMIT DROP"
                ).format(self._stage(table), self._name(table))
            )
        self._staged = True
