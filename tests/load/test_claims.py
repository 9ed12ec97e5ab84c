"""The window ledger's claims and heartbeats (etl.load.claims), on PostgreSQL."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, text

from etl.load.claims import WindowLedger
from etl.load.schema import build_metadata
from etl.windows import Window
from tests.conftest import TestWarehouse

DAY = timedelta(days=1)
T = datetime(2024, 3, 1, tzinfo=UTC)


def test_the_heartbeat_goes_on_while_one_of_the_holders_windows_commits(
    pg_warehouse: TestWarehouse,
) -> None:
    """A window's transaction holds its ledger row from `loaded()` to its commit, and may
    wait meanwhile (for another run's commit). The heartbeat waited for that row too, so the
    holder's other windows, still loading, went without one and another run took them over."""
    pg_warehouse.migrate()
    metadata = build_metadata(pg_warehouse.schema)
    table = metadata.tables[f"{pg_warehouse.schema}.etl_windows"]
    engine = pg_warehouse.engine()
    # claim_timeout 5 s: a beat a second.
    ledger = WindowLedger(engine, metadata, key="k", run_id="r", timeout=timedelta(seconds=5))
    ledger.start()
    committing, loading = Window(T, T + DAY), Window(T + DAY, T + 2 * DAY)
    try:
        assert ledger.claim(committing) is None and ledger.claim(loading) is None

        def heartbeat(window: Window) -> datetime:
            with engine.connect() as conn:
                return conn.execute(
                    select(table.c.heartbeat_at).where(table.c.window_start == window.start)
                ).scalar_one()

        first = heartbeat(loading)
        with engine.connect() as holder:  # the committing window's transaction
            holder.begin()
            holder.execute(
                text(f'SELECT 1 FROM "{pg_warehouse.schema}".etl_windows '
                     "WHERE window_start = :s FOR UPDATE"),
                {"s": committing.start},
            )  # fmt: skip
            deadline = time.monotonic() + 10
            while heartbeat(loading) == first and time.monotonic() < deadline:
                time.sleep(0.2)
            assert heartbeat(loading) > first  # the loading window's heartbeat went on
            holder.rollback()
    finally:
        ledger.stop()
        engine.dispose()
