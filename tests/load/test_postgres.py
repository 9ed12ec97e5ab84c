"""The PostgreSQL loader: later copies within a window, hand-deleted rows, index-only deletes,
and conversations that are not plain JSON (the stdlib JSON path)."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from etl.load.loader import WindowLoader, open_loader
from etl.load.postgres import _bigint_array, _with_index_scans
from etl.load.schema import build_metadata
from etl.normalize import content_digest
from etl.pipeline.runner import normalize_batch
from etl.pipeline.worker import as_sent
from tests.conftest import TestWarehouse
from tests.load.test_deletes import DAY, conversation, marks, t, window, window_in

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


def _load(engine: Engine, schema: str | None, *batches: list[dict[str, Any]]) -> WindowLoader:
    """One window, in one transaction, batch by batch through the runner's `normalize_batch` and `merge`."""
    with engine.begin() as conn:
        loader = open_loader(conn, build_metadata(schema), run_id="t", exported_at=EXPORTED)
        for batch in batches:
            loader.merge(normalize_batch([as_sent(c) for c in batch], keep_raw=False))
        loader.finish()
    return loader


def _rows(engine: Engine, query: str) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(text(query))]


def test_a_conversation_changed_twice_in_one_window_ends_with_the_later_copy(
    pg_warehouse: TestWarehouse,
) -> None:
    pg_warehouse.migrate()
    t = pg_warehouse.table
    engine = pg_warehouse.engine()
    try:
        loader = _load(
            engine,
            pg_warehouse.schema,
            [_conversation(1, "first", "a"), _conversation(2, "other", "a")],
            [_conversation(1, "second", "b")],  # replaces what the first batch wrote
            [_conversation(1, "second", "b"), _conversation(3, "new", "c")],  # 1 unchanged now
        )
        content = _rows(engine, f"SELECT conversation_id, text FROM {t('content')}")
        conversations = _rows(engine, f"SELECT id FROM {t('conversations')}")
        messages = _rows(engine, f"SELECT conversation_id FROM {t('messages')}")
        action = _rows(engine, f"SELECT action_type FROM {t('actions')} WHERE id = 7")
    finally:
        engine.dispose()
    assert loader.outcomes == {
        "new": 3,
        "changed": 1,
        "unchanged": 1,
        "older": 0,
        "rejected": 0,
        "forgotten": 0,
    }
    assert sorted(content) == [(1, "second"), (2, "other"), (3, "new")]
    assert sorted(conversations) == sorted(messages) == [(1,), (2,), (3,)]
    assert action == [("c",)]  # the same last_seen_at in all three: the latest row staged wins


def test_rows_left_by_a_conversation_deleted_by_hand_do_not_block_its_reload(
    pg_warehouse: TestWarehouse,
) -> None:
    pg_warehouse.migrate()
    engine = pg_warehouse.engine()
    try:
        for content in ("before", "after"):
            _load(engine, pg_warehouse.schema, [_conversation(1, content, "a")])
            if content == "before":  # an erasure that forgot the child tables (no foreign keys)
                with engine.begin() as conn:
                    conn.execute(text(f"DELETE FROM {pg_warehouse.table('conversations')}"))
        stored = _rows(engine, f"SELECT conversation_id, text FROM {pg_warehouse.table('content')}")
    finally:
        engine.dispose()
    assert stored == [(1, "after")]


def test_a_copy_another_window_commits_after_the_read_is_waited_for_and_read_as_stored(
    pg_warehouse: TestWarehouse,
) -> None:
    # The lock and the placeholder insert go together: a conversation another window is
    # writing is in neither result (the lock does not see it, the insert waits for it and then
    # inserts nothing). It must still be locked and read, or this window would fail on the
    # primary key or keep an older copy.
    pg_warehouse.migrate()
    metadata = build_metadata(pg_warehouse.schema)
    conversation = _conversation(5, "theirs", "a")
    engine = pg_warehouse.engine()
    locked: dict[int, Any] = {}
    try:
        with engine.begin() as conn:
            raw = conn.connection.driver_connection
            assert raw is not None
            loader = open_loader(conn, metadata, run_id="mine", exported_at=EXPORTED)
            assert loader._stored([5]) == {}
            with engine.connect() as other_conn:
                other_tx = other_conn.begin()
                other = open_loader(other_conn, metadata, run_id="theirs", exported_at=EXPORTED)
                other.merge(normalize_batch([as_sent(conversation)], keep_raw=False))
                waiting = _Background(lambda: locked.update(loader._lock_for_writing([5], {})))
                waiting.start()
                _until_waiting_for_a_lock(engine, raw.info.backend_pid)
                other.finish()
                other_tx.commit()
            waiting.join(timeout=30)
            assert not waiting.is_alive()
    finally:
        engine.dispose()
    waiting.raise_error()
    assert locked == {5: (content_digest(conversation).content_hash, EXPORTED)}


def test_a_batch_locks_the_stored_rows_before_it_inserts_a_placeholder(
    pg_warehouse: TestWarehouse,
) -> None:
    # Windows take row locks in one order: stored rows first, then placeholders. A batch whose
    # read missed a stored row (another window committed it since) must wait for that row
    # before holding any placeholder, or a window holding the row and wanting one of those
    # ids would deadlock with it.
    pg_warehouse.migrate()
    metadata = build_metadata(pg_warehouse.schema)
    conversations = pg_warehouse.table("conversations")
    engine = pg_warehouse.engine()
    try:
        _load(engine, pg_warehouse.schema, [_conversation(1, "stored", "a")])
        with engine.connect() as holder:
            holder.execute(text(f"SELECT id FROM {conversations} WHERE id = 1 FOR UPDATE"))
            with engine.begin() as conn:
                raw = conn.connection.driver_connection
                assert raw is not None
                loader = open_loader(conn, metadata, run_id="mine", exported_at=EXPORTED)
                # A read that found neither.
                waiting = _Background(lambda: loader._lock_for_writing([1, 2], {}))
                waiting.start()
                try:
                    _until_waiting_for_a_lock(engine, raw.info.backend_pid)
                    with engine.connect() as other:  # id 2 must still be free
                        other.execute(text("SET LOCAL lock_timeout = '10s'"))
                        try:
                            other.execute(
                                text(
                                    f"INSERT INTO {conversations} (id, content_hash, "
                                    "loaded_at, load_run_id) VALUES (2, 'x', now(), 'x')"
                                )
                            )
                        except DBAPIError as exc:
                            pytest.fail(f"the batch held a placeholder while it waited: {exc}")
                        other.rollback()
                finally:
                    holder.rollback()  # let the batch go on, whatever happened
                    waiting.join(timeout=30)
                assert not waiting.is_alive()
    finally:
        engine.dispose()
    waiting.raise_error()


def _detecting_behind(
    wh: TestWarehouse, hold: Callable[[Connection], None]
) -> tuple[list[int], dict[int, Any]]:
    """Conversations 1 and 2 loaded at t(1); then, while another transaction that `hold` ran
    is open, DAY's window exported at t(3), which returned only 2, detects deletions and waits
    for it; the other commits. What the window found deleted, and the marks after."""
    wh.migrate()
    engine = wh.engine()
    found: list[int] = []
    try:
        window(engine, wh.schema, t(1), [conversation(1), conversation(2)])
        with engine.connect() as other:
            other.begin()
            hold(other)
            detecting = _Background(
                lambda: found.append(window(engine, wh.schema, t(3), [conversation(2)]))
            )
            detecting.start()
            _until_waiting_for_a_lock(engine)
            other.commit()
        detecting.join(timeout=30)
        assert not detecting.is_alive()
        detecting.raise_error()
        return found, marks(wh, engine)
    finally:
        engine.dispose()


def test_a_copy_another_window_moves_out_meanwhile_is_not_marked_deleted(
    pg_warehouse: TestWarehouse,
) -> None:
    """Deletion detection reads its candidates, then locks them and looks again: the window
    of the next day committing conversation 1's new copy (its question moved there) after the
    read must not see that copy marked deleted (found in review)."""
    next_day = DAY + timedelta(days=1)
    moved = conversation(1, asked_at=next_day)
    found, after = _detecting_behind(
        pg_warehouse,
        lambda conn: window_in(conn, pg_warehouse.schema, t(2), [moved], day=next_day),
    )
    assert found == [0]
    assert after == {1: None, 2: None}


def test_two_windows_that_find_one_deletion_count_it_once(pg_warehouse: TestWarehouse) -> None:
    """The second to mark a conversation waits for the first, then finds it marked: the runs'
    deletion counts add up to the conversations marked (found in review: 59 for 38)."""
    first: list[int] = []
    found, after = _detecting_behind(
        pg_warehouse,
        lambda conn: first.append(window_in(conn, pg_warehouse.schema, t(2), [conversation(2)])),
    )
    assert (first, found) == ([1], [0])
    assert after == {1: t(2), 2: None}


class _Background(threading.Thread):
    """Runs `work` in a thread of its own and keeps what it raised for `raise_error`."""

    def __init__(self, work: Callable[[], object]) -> None:
        super().__init__(daemon=True)
        self._work = work
        self._error: BaseException | None = None

    def run(self) -> None:
        try:
            self._work()
        except BaseException as exc:  # noqa: BLE001 - raised in the test's own thread
            self._error = exc

    def raise_error(self) -> None:
        if self._error is not None:
            raise self._error


def _until_waiting_for_a_lock(engine: Engine, pid: int | None = None) -> None:
    """Return once the session `pid` (any session of this database: None) waits for a lock
    (fail after 30 s)."""
    which = "pid = :pid" if pid is not None else "datname = current_database()"
    with engine.connect() as conn:
        for _ in range(600):
            waiting = conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    f"WHERE {which} AND wait_event_type = 'Lock'"
                ),
                {"pid": pid},
            ).scalar_one()
            if waiting:
                return
            conn.rollback()
            time.sleep(0.05)
    raise AssertionError(f"session {pid or '(any)'} never waited for a lock")


# The deletes a _PlanningCursor saw: statement, parameters, and the plan it got where it ran.
_DELETES: list[tuple[sql.Composable, Any, str]] = []


class _PlanningCursor(psycopg.Cursor[Any]):
    """Records the loader's delete statement and the plan it gets where it is run."""

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        if isinstance(query, sql.Composable) and "DELETE" in query.as_string(self.connection):
            plan = super().execute(sql.SQL("EXPLAIN ") + query, params).fetchall()
            _DELETES.append((query, params, "\n".join(row[0] for row in plan)))
        return super().execute(query, params, **kwargs)


def test_reloads_delete_through_the_indexes_before_any_statistics(
    pg_warehouse: TestWarehouse,
) -> None:
    # A fresh warehouse has no statistics: the planner then takes `conversation_id = ANY(...)`
    # for the whole table and scans it, once per batch (quadratic over a backfill).
    pg_warehouse.migrate()
    engine = pg_warehouse.engine()
    _DELETES.clear()
    try:
        _load(engine, pg_warehouse.schema, [_conversation(i, "t", "a") for i in range(300)])
        with engine.begin() as conn:
            raw = conn.connection.driver_connection
            assert raw is not None
            loader = open_loader(
                conn, build_metadata(pg_warehouse.schema), run_id="t", exported_at=EXPORTED
            )
            raw.cursor_factory = _PlanningCursor
            try:
                loader._delete(list(range(1000, 1500)))  # the loader's own delete, as it runs
            finally:
                raw.cursor_factory = psycopg.Cursor
            ((statement, params, guarded),) = _DELETES
            with raw.cursor() as cur:
                unguarded = "\n".join(
                    row[0] for row in cur.execute(sql.SQL("EXPLAIN ") + statement, params)
                )
                setting = cur.execute("SHOW enable_seqscan").fetchone()
    finally:
        engine.dispose()
    assert "Seq Scan" in unguarded  # what the planner does without statistics
    assert "Seq Scan" not in guarded
    for index in ("ix_messages_conversation_id", "ix_content_conversation_id", "pk_conversations"):
        assert index in guarded
    assert setting == ("on",)  # restored at once


def test_a_failing_statement_reports_its_own_error_not_the_guards(
    pg_warehouse: TestWarehouse,
) -> None:
    engine = pg_warehouse.engine()
    try:
        with engine.connect() as conn:
            raw = conn.connection.driver_connection
            assert raw is not None
            with raw.cursor() as cur, pytest.raises(psycopg.errors.DivisionByZero):
                _with_index_scans((cur, sql.SQL("SELECT 1 / 0"), None))
            raw.rollback()
            assert raw.execute("SHOW enable_seqscan").fetchone() == ("on",)
    finally:
        engine.dispose()


def test_the_guards_give_back_the_setting_they_found(pg_warehouse: TestWarehouse) -> None:
    # A role, a session or an earlier statement that turned sequential scans off keeps them
    # off after a delete; one that turned them back on keeps them on.
    pg_warehouse.migrate()
    engine = pg_warehouse.engine()
    try:
        with engine.begin() as conn:
            raw = conn.connection.driver_connection
            assert raw is not None
            loader = open_loader(
                conn, build_metadata(pg_warehouse.schema), run_id="t", exported_at=EXPORTED
            )
            found = []
            for setting in ("off", "on"):
                raw.execute(f"SET LOCAL enable_seqscan = {setting}")
                loader._delete([1, 2])
                found.append(raw.execute("SHOW enable_seqscan").fetchone())
    finally:
        engine.dispose()
    assert found == [("off",), ("on",)]


def test_ids_go_as_the_text_form_of_an_array(pg_warehouse: TestWarehouse) -> None:
    ids = [-(2**63), -1, 0, 7, 2**63 - 1]
    engine = pg_warehouse.engine()
    try:
        with engine.connect() as conn:
            raw = conn.connection.driver_connection
            assert raw is not None
            got = [
                raw.execute("SELECT %s::bigint[]", (_bigint_array(given),)).fetchone()
                for given in (ids, [])
            ]
    finally:
        engine.dispose()
    assert got == [(ids,), ([],)]


BIG = 2**70 + 1  # beyond 64 bits: orjson refuses it, the stdlib encodes it exactly


def test_conversations_that_are_not_plain_json_load_exactly_through_the_stdlib_encoder(
    pg_warehouse: TestWarehouse,
) -> None:
    pg_warehouse.migrate()
    t = pg_warehouse.table
    odd = _conversation(1, "odd", "a")
    odd["user_information"] = {"big": BIG, "negative": -BIG, "name": "Zoë 你好", "ratio": 0.1}
    odd["messages"][0]["content"].append({"type": "json", "json": {"n": [BIG, 1]}})
    odd["messages"][0]["actions"]["displayed"]["weight"] = BIG  # a dimension's `extra`
    plain = _conversation(2, "plain", "b")
    plain["user_information"] = {"small": 2**62}
    assert content_digest(odd).plain is False
    assert content_digest(plain).plain is True
    engine = pg_warehouse.engine()
    try:
        # In one batch with a plain conversation, and on its own in the next window.
        _load(engine, pg_warehouse.schema, [odd, plain])
        _load(engine, pg_warehouse.schema, [odd | {"reviewed": True}])
        info = _rows(
            engine,
            f"SELECT id, user_information->>'big', user_information->>'negative', "
            f"user_information->>'name', user_information->>'ratio', user_information, reviewed "
            f"FROM {t('conversations')} ORDER BY id",
        )
        json_content = _rows(
            engine, f"SELECT json->'n'->>0 FROM {t('content')} WHERE json IS NOT NULL"
        )
        action = _rows(engine, f"SELECT extra->>'weight' FROM {t('actions')} WHERE id = 7")
    finally:
        engine.dispose()
    ((_, big, negative, name, ratio, as_python, reviewed), (_, *_, small_info, _)) = info
    assert (big, negative, name, ratio) == (str(BIG), str(-BIG), "Zoë 你好", "0.1")
    assert as_python == odd["user_information"]  # read back by psycopg: exact, not a float
    assert reviewed is True
    assert small_info == {"small": 2**62}
    assert json_content == [(str(BIG),)]
    assert action == [(str(BIG),)]  # the later window's row (the same last_seen_at)


def test_a_column_of_the_users_own_on_a_dimension_keeps_its_default(
    pg_warehouse: TestWarehouse,
) -> None:
    """docs/schema.md allows columns of your own; the dimension stage holds only the columns
    the loader writes, so a NOT NULL column with a default gets its default (found in review:
    every window failed on the stage)."""
    pg_warehouse.migrate()
    t = pg_warehouse.table
    engine = pg_warehouse.engine()
    try:
        with engine.begin() as conn:
            conn.execute(text(f"ALTER TABLE {t('actions')} ADD team text NOT NULL DEFAULT 'bi'"))
        _load(engine, pg_warehouse.schema, [_conversation(1, "hello", "a")])
        teams = _rows(engine, f"SELECT id, team FROM {t('actions')}")
    finally:
        engine.dispose()
    assert teams == [(7, "bi")]


def test_an_identifier_too_long_for_a_btree_entry_loads_and_can_be_erased(
    pg_warehouse: TestWarehouse,
) -> None:
    """PostgreSQL refuses a B-tree entry over 2,704 bytes, and with it the whole COPY: random
    text does not compress below that. The identifier's index is a hash index (migration 0009)."""
    from etl.load import erasure

    pg_warehouse.migrate()
    identifier = secrets.token_urlsafe(3000)
    long_one = {**_conversation(1, "hello", "a"), "authentication_identifier": identifier}
    engine = pg_warehouse.engine()
    try:
        _load(engine, pg_warehouse.schema, [long_one, _conversation(2, "other", "a")])
        stored = _rows(engine, f"SELECT id FROM {pg_warehouse.table('conversations')}")
        with engine.connect() as conn:
            request = erasure.matching(
                conn, build_metadata(pg_warehouse.schema), identifiers=[identifier]
            )
    finally:
        engine.dispose()
    assert sorted(stored) == [(1,), (2,)]
    assert request.conversations == [1]


def test_a_program_limit_is_the_warehouse_refusing_the_write_not_a_lost_connection(
    pg_warehouse: TestWarehouse,
) -> None:
    """psycopg raises SQLSTATE class 54 as OperationalError; retrying would fail the same way."""
    from etl.pipeline.runner import database_error

    with psycopg.connect(pg_warehouse.url.replace("+psycopg", "")) as conn:
        conn.execute("CREATE TEMP TABLE long_keys (key text)")
        conn.execute("CREATE INDEX ON long_keys (key)")
        with pytest.raises(psycopg.OperationalError) as raised:
            conn.execute("INSERT INTO long_keys VALUES (%s)", (secrets.token_urlsafe(3000),))
    assert raised.value.sqlstate == "54000"
    found = database_error(raised.value, "window [a, b)")
    assert not found.retryable
    assert "refused the write" in str(found) and "index row size" in str(found)


def test_the_erasure_gate_is_the_schemas_however_the_settings_name_it(
    pg_warehouse: TestWarehouse,
) -> None:
    """A loader whose settings name no schema (the search path's) and an eraser that names it
    must wait for each other: one gate per schema the tables are in."""
    pg_warehouse.migrate()
    engine = pg_warehouse.engine()
    try:
        with engine.begin() as conn:
            conn.execute(text(f'SET LOCAL search_path = "{pg_warehouse.schema}"'))
            unnamed = open_loader(conn, build_metadata(None), run_id="t", exported_at=EXPORTED)
            named = open_loader(
                conn, build_metadata(pg_warehouse.schema), run_id="t", exported_at=EXPORTED
            )
            assert unnamed._erasure_gate == named._erasure_gate  # type: ignore[attr-defined]
            other = open_loader(conn, build_metadata("elsewhere"), run_id="t", exported_at=None,
                                erasing=True)  # fmt: skip
            assert other._erasure_gate != named._erasure_gate  # type: ignore[attr-defined]
    finally:
        engine.dispose()
