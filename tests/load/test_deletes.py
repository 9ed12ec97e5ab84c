"""Deletions detected at the source (WindowLoader.detect_deletes, confirm_returned) in export
time, on both warehouses: a mark is the time of the export that found the conversation gone,
and only a later export's evidence changes it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, text

from etl.load.loader import open_loader
from etl.load.schema import build_metadata
from etl.pipeline.runner import normalize_batch
from etl.pipeline.worker import as_sent
from tests.conftest import TestWarehouse

DAY = datetime(2024, 3, 25, tzinfo=UTC)
KEY = "site-and-filters"


def t(hours: int) -> datetime:
    """An export time: hours after the day's end."""
    return DAY + timedelta(days=1, hours=hours)


def conversation(cid: int, asked_at: datetime = DAY) -> dict[str, Any]:
    """A conversation with one question (an end-user interaction) at `asked_at`."""
    return {
        "type": "conversation",
        "id": cid,
        "messages": [
            {
                "id": cid * 10,
                "time": (asked_at + timedelta(hours=10)).isoformat(),
                "type": "question",
                "content": [{"type": "text", "text": f"question {cid}"}],
            }
        ],
    }


def window(
    engine: Engine,
    schema: str | None,
    exported_at: datetime,
    returned: Sequence[dict[str, Any]],
) -> int:
    """A complete export of DAY's window, taken at `exported_at`, that returned `returned`,
    loaded and committed (`window_in`); the number found deleted."""
    with engine.begin() as conn:
        return window_in(conn, schema, exported_at, returned)


def window_in(
    conn: Connection,
    schema: str | None,
    exported_at: datetime,
    returned: Sequence[dict[str, Any]],
    day: datetime = DAY,
) -> int:
    """In `conn`'s transaction: load a complete export of `day`'s window, taken at
    `exported_at`, that returned `returned`; confirm what it returned and detect what it did
    not, as the runner does; the number found deleted."""
    loader = open_loader(conn, build_metadata(schema), run_id="t", exported_at=exported_at)
    loader.source_key = KEY
    loader.merge(normalize_batch([as_sent(c) for c in returned], keep_raw=False))
    loader.finish()
    loader.confirm_returned()
    return loader.detect_deletes(day, day + timedelta(days=1), hard=False)


def marks(wh: TestWarehouse, engine: Engine) -> dict[int, Any]:
    with engine.connect() as conn:
        rows = conn.execute(text(f"SELECT id, deleted_at FROM {wh.table('conversations')}"))
        return {cid: _utc(at) for cid, at in rows}


def references(wh: TestWarehouse, engine: Engine) -> dict[int, Any]:
    with engine.connect() as conn:
        rows = conn.execute(text(f"SELECT id, reference FROM {wh.table('conversations')}"))
        return {cid: reference for cid, reference in rows}


def _utc(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):  # SQLite
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def test_only_a_later_export_changes_what_an_export_found(migrated: TestWarehouse) -> None:
    engine = migrated.engine()
    try:
        window(engine, migrated.schema, t(1), [conversation(1), conversation(2)])
        assert window(engine, migrated.schema, t(3), [conversation(2)]) == 1
        assert marks(migrated, engine) == {1: t(3), 2: None}  # the export's time
        # An export taken before that one (a window that started first, committed last)
        # returned 1 before it went: the mark stays.
        assert window(engine, migrated.schema, t(2), [conversation(1), conversation(2)]) == 0
        assert marks(migrated, engine) == {1: t(3), 2: None}
        # Nor when it carries a changed copy: newer content than what is stored, not a return.
        changed = {**conversation(1), "reference": "changed before it went"}
        assert window(engine, migrated.schema, t(2), [changed, conversation(2)]) == 0
        assert marks(migrated, engine) == {1: t(3), 2: None}
        assert references(migrated, engine)[1] == "changed before it went"
        # Nor does an export older than the stored copy say that copy is gone.
        assert window(engine, migrated.schema, t(0), []) == 0
        assert marks(migrated, engine) == {1: t(3), 2: None}
        # A later export that returns it again: it is back.
        assert window(engine, migrated.schema, t(4), [conversation(1), conversation(2)]) == 0
        assert marks(migrated, engine) == {1: None, 2: None}
    finally:
        engine.dispose()
