"""PostgreSQL's decide/load protocol (the worker's path): batches decided before they load."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from psycopg import sql
from sqlalchemy import Engine, text

from etl.load.batch import encode_batch
from etl.load.pgload import PgBatchLoader, _index_scans_only
from etl.normalize import normalize_conversation
from tests.conftest import TestWarehouse

EXPORTED = datetime(2024, 4, 1, tzinfo=UTC)


def _conversation(cid: int, text_: str, title: str) -> dict[str, Any]:
    return {
        "type": "conversation",
        "id": cid,
        "messages": [
            {
                "id": cid * 10,
                "time": "2024-03-25T10:00:00+00:00",
                "type": "answer",
                "actions": {"displayed": {"type": "action", "id": 7, "action_type": title}},
                "content": [{"type": "text", "text": text_}],
            }
        ],
    }


def _decide_and_load(
    engine: Engine, schema: str | None, *batches: list[dict[str, Any]]
) -> list[list[bool]]:
    """In one transaction, decide every batch first, then load them in order: the worker's
    worst case."""
    normalized = [[normalize_conversation(c) for c in batch] for batch in batches]
    with engine.begin() as conn:
        raw = conn.connection.driver_connection
        loader = PgBatchLoader(raw, schema, run_id="t", exported_at=EXPORTED)
        answers = [loader.decide([(n.id, n.content_hash) for n in batch]) for batch in normalized]
        for batch, flags in zip(normalized, answers, strict=True):
            loader.load_decided(encode_batch(n for n, f in zip(batch, flags, strict=True) if f))
        loader.finish()
    return answers


def test_a_conversation_changed_in_two_batches_decided_before_loading(
    pg_warehouse: TestWarehouse,
) -> None:
    pg_warehouse.migrate()
    engine = pg_warehouse.engine()
    try:
        answers = _decide_and_load(
            engine,
            pg_warehouse.schema,
            [_conversation(1, "first", "a"), _conversation(2, "other", "a")],
            [_conversation(1, "second", "b")],  # replaces 1 before it was loaded
            [_conversation(1, "second", "b"), _conversation(3, "new", "c")],
        )
        assert answers == [[True, True], [True], [False, True]]
        with engine.connect() as conn:
            content = conn.execute(
                text(f"SELECT conversation_id, text FROM {pg_warehouse.table('content')}")
            ).all()
            action = conn.execute(
                text(f"SELECT action_type FROM {pg_warehouse.table('actions')} WHERE id = 7")
            ).scalar_one()
    finally:
        engine.dispose()
    assert sorted(content) == [(1, "second"), (2, "other"), (3, "new")]
    assert action == "c"  # the same last_seen_at in all three: the latest row staged wins


def test_rows_left_by_a_conversation_deleted_by_hand_do_not_block_its_reload(
    pg_warehouse: TestWarehouse,
) -> None:
    pg_warehouse.migrate()
    engine = pg_warehouse.engine()
    try:
        for content in ("before", "after"):
            _decide_and_load(engine, pg_warehouse.schema, [_conversation(1, content, "a")])
            if content == "before":  # an erasure that forgot the child tables (no foreign keys)
                with engine.begin() as conn:
                    conn.execute(text(f"DELETE FROM {pg_warehouse.table('conversations')}"))
        with engine.connect() as conn:
            stored = conn.execute(
                text(f"SELECT conversation_id, text FROM {pg_warehouse.table('content')}")
            ).all()
    finally:
        engine.dispose()
    assert stored == [(1, "after")]


def test_reloads_delete_through_the_indexes_before_any_statistics(
    pg_warehouse: TestWarehouse,
) -> None:
    # A fresh warehouse has no statistics: the planner then takes `conversation_id = ANY(...)`
    # for the whole table and scans it, once per batch (quadratic over a backfill).
    pg_warehouse.migrate()
    engine = pg_warehouse.engine()
    try:
        _decide_and_load(
            engine, pg_warehouse.schema, [_conversation(i, "t", "a") for i in range(300)]
        )
        with engine.begin() as conn:
            raw = conn.connection.driver_connection
            assert raw is not None
            loader = PgBatchLoader(raw, pg_warehouse.schema, run_id="t", exported_at=EXPORTED)
            statement = sql.SQL("EXPLAIN ") + loader._delete_statement()
            ids = {"ids": list(range(1000, 1500))}
            with raw.cursor() as cur:
                unguarded = "\n".join(row[0] for row in cur.execute(statement, ids))
                with _index_scans_only(cur):
                    guarded = "\n".join(row[0] for row in cur.execute(statement, ids))
                setting = cur.execute("SHOW enable_seqscan").fetchone()
    finally:
        engine.dispose()
    assert "Seq Scan" in unguarded  # what the planner does without statistics
    assert "Seq Scan" not in guarded
    for index in ("ix_messages_conversation_id", "ix_content_conversation_id", "pk_conversations"):
        assert index in guarded
    assert setting == ("on",)  # restored at once


def test_a_failing_delete_reports_its_own_error_not_the_guards(pg_warehouse: TestWarehouse) -> None:
    import psycopg

    engine = pg_warehouse.engine()
    try:
        with engine.connect() as conn:
            raw = conn.connection.driver_connection
            assert raw is not None
            with raw.cursor() as cur, pytest.raises(psycopg.errors.DivisionByZero):
                with _index_scans_only(cur):
                    cur.execute("SELECT 1 / 0")
            raw.rollback()
            assert raw.execute("SHOW enable_seqscan").fetchone() == ("on",)
    finally:
        engine.dispose()
