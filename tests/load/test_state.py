"""The watermark moved over committed windows (etl.load.state), as windows commit at once."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection

from etl.load.schema import build_metadata
from etl.load.state import StateStore
from tests.conftest import TestWarehouse

T = datetime(2024, 3, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def test_two_first_windows_committing_at_once_both_count(pg_warehouse: TestWarehouse) -> None:
    """With no etl_state row yet, the second of two windows committing at once used to find
    nothing to lock, not see the first's ledger row, and give up: the watermark then stopped
    after the first window although both had committed."""
    pg_warehouse.migrate()
    metadata = build_metadata(pg_warehouse.schema)
    store = StateStore(metadata)
    windows = metadata.tables[f"{pg_warehouse.schema}.etl_windows"]
    engine = pg_warehouse.engine()

    def ledger_row(conn: Connection, start: datetime) -> None:
        conn.execute(
            windows.insert().values(
                state_key="k", window_start=start, window_end=start + DAY, state="loaded",
                committed_at=datetime.now(UTC),
            )
        )  # fmt: skip

    def advance(conn: Connection) -> datetime | None:
        return store.advance_over_loaded(conn, "k", floor=T, site="s", filters={}, run_id="r")

    try:
        first, second = engine.connect(), engine.connect()
        first.begin()
        ledger_row(first, T)
        assert advance(first) == T + DAY  # creates the state row; not committed yet
        second.begin()
        ledger_row(second, T + DAY)
        moved: list[datetime | None] = []
        waiting = threading.Thread(target=lambda: moved.append(advance(second)))
        waiting.start()
        waiting.join(0.5)  # the second waits for the first to commit ...
        first.commit()
        waiting.join(10)
        assert not waiting.is_alive()
        second.commit()
        assert moved == [T + 2 * DAY]  # ... and then goes over both windows
        with engine.connect() as conn:
            assert store.watermark(conn, "k") == T + 2 * DAY
        first.close()
        second.close()
    finally:
        engine.dispose()
