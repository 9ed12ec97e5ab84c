"""Windows in parallel: threads in one run, and several runs over one range at once."""

from __future__ import annotations

import itertools
import json
import os
import random
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import text

from etl.fakeapi import Dataset, DatasetSpec, Faults
from etl.windows import parse_instant, plan_windows
from tests.conftest import SIM_TOKEN, TestWarehouse, dump_tables
from tests.pipeline.cli_helpers import etl, write_config
from tests.pipeline.test_e2e import OSLO, START, UNTIL, config_for, watermark

DATA_TABLES = ("conversations", "messages", "content", "buttons", "intent_analysis")


def _wipe(wh: TestWarehouse) -> None:
    engine = wh.engine()
    try:
        with engine.begin() as conn:
            for table in (*DATA_TABLES, "intents", "actions", "etl_state", "etl_windows"):
                conn.execute(text(f"DELETE FROM {wh.table(table)}"))
    finally:
        engine.dispose()


def _ledger(wh: TestWarehouse) -> list[tuple[str, str, str | None]]:
    engine = wh.engine()
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    f"SELECT window_start, state, committed_at FROM {wh.table('etl_windows')} "
                    "ORDER BY window_start"
                )
            ).all()
    finally:
        engine.dispose()
    return [(str(r[0]), r[1], None if r[2] is None else "committed") for r in rows]


def test_a_failed_window_in_the_middle_holds_the_watermark_and_the_next_run_resumes(
    warehouse: TestWarehouse, make_sim: Any, tmp_path: Path
) -> None:
    """Windows finish out of order: the watermark moves only over windows that are all
    loaded. The second and third windows fail (the server breaks their streams); the ones
    around them commit, `etl status` shows the holes, and the next run loads from the first
    hole on."""
    config = config_for(tmp_path)
    etl("migrate", wh=warehouse, config=config, check=True)
    start, until = (parse_instant(d, OSLO).astimezone(UTC) for d in (START, UNTIL))
    windows = [(w.start, w.end) for w in plan_windows(start, until, timedelta(days=1))]
    assert len(windows) == 5
    failing = windows[1:3]
    broken = make_sim(
        faults=Faults(error_after=5, only_starts=tuple(w[0].isoformat() for w in failing))
    )
    failed = etl("run", "--until", UNTIL, "--workers", "5", wh=warehouse, api=broken, config=config)
    assert failed.code == 4, failed.output
    assert watermark(warehouse) == failing[0][0].isoformat()  # the first window's end
    assert [state for _, state, _ in _ledger(warehouse)] == [
        "failed" if w in failing else "loaded" for w in windows
    ]

    status = json.loads(etl("status", "--json", wh=warehouse, config=config, check=True).stdout)
    (state,) = status["states"]
    past = state["windows_after_watermark"]
    assert [(w["window_start"], w["state"]) for w in past] == [
        (w[0].isoformat(), "failed" if w in failing else "loaded") for w in windows[1:]
    ]
    shown = etl("status", wh=warehouse, config=config, check=True).stdout
    assert "4 window(s) past the watermark" in shown and "mid-stream" in shown

    port = broken.port
    broken.stop()  # the same site (URL) keeps the same watermark: reuse the port
    good = make_sim(port=port)
    again = etl("run", "--until", UNTIL, wh=warehouse, api=good, config=config, check=True)
    assert "run: 4 window(s) to load" in again.stderr  # from the first hole on
    assert "0 new, 0 changed" in again.stderr  # the windows that had loaded: no-ops
    assert watermark(warehouse) == until.isoformat()
    engine = warehouse.engine()
    try:
        with engine.connect() as conn:
            table = warehouse.table("conversations")
            ids = sorted(conn.execute(text(f"SELECT id FROM {table}")).scalars())
    finally:
        engine.dispose()
    assert ids == sorted(good.matching_ids(start, until))


def _spanning_dataset() -> Any:
    """Two days, 300 conversations a day: with hour windows, many conversations have end-user
    interactions in two windows, so concurrent windows load them at the same time."""
    return Dataset.build(DatasetSpec(seed=11, start=date(2024, 5, 6), days=2, per_day=300), "UTC")


def test_four_processes_on_overlapping_ranges_converge_to_a_serial_load(
    pg_warehouse: TestWarehouse, another_pg_warehouse: TestWarehouse, make_sim: Any,
    tmp_path: Path,
) -> None:  # fmt: skip
    """The stress test of issue 13: four `etl backfill` processes on overlapping ranges, with
    different window sizes and thread counts (so windows and conversations meet in ever other
    orders), repeated; each time every process succeeds, and the tables are row for row what
    one serial backfill gives, the watermark at the end of the range."""
    api = make_sim(dataset=_spanning_dataset())
    first, last = datetime(2024, 5, 6, tzinfo=UTC), datetime(2024, 5, 8, tzinfo=UTC)
    hours = list(plan_windows(first, last, timedelta(hours=1)))
    in_windows = [set(api.matching_ids(w.start, w.end)) for w in hours]
    spanning = set.union(*(a & b for a, b in itertools.pairwise(in_windows)))
    assert len(spanning) >= 20  # the meeting this test is about does happen

    config = write_config(tmp_path, pipeline={"start": "2024-05-06T00:00:00Z", "window": "1h"})
    reference = another_pg_warehouse
    etl("migrate", wh=reference, config=config, check=True)
    etl("backfill", "--from", "2024-05-06T00:00:00Z", "--to", "2024-05-08T00:00:00Z",
        "--window", "1d", wh=reference, api=api, config=config, check=True)  # fmt: skip
    expected = dump_tables(reference, volatile=False)
    assert len(expected["conversations"]) == len(set.union(*in_windows))

    wh = pg_warehouse
    etl("migrate", wh=wh, config=config, check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETL_")}
    env.update(wh.env(), ETL_API_URL=api.url, ETL_API_TOKEN=SIM_TOKEN)
    for round_ in range(3):
        rng = random.Random(round_)
        _wipe(wh)
        commands = []
        for _ in range(4):
            begin = rng.choice([0, 0, 6, 12, 18])
            end = rng.choice([30, 36, 42, 48, 48])
            commands.append([
                "backfill",
                "--from", (first + timedelta(hours=begin)).isoformat(),
                "--to", (first + timedelta(hours=end)).isoformat(),
                "--window", rng.choice(["1h", "2h", "3h", "5h"]),
                "--workers", str(rng.choice([1, 2, 3])),
            ])  # fmt: skip
        # Between them the four ranges cover the two days.
        commands[0][2], commands[0][4] = first.isoformat(), last.isoformat()
        processes = [
            subprocess.Popen(
                [sys.executable, "-m", "etl", "--config", str(config), *command],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for command in commands
        ]
        outputs = [p.communicate(timeout=300)[1] for p in processes]
        for command, process, output in zip(commands, processes, outputs, strict=True):
            assert process.returncode == 0, f"round {round_}: {command}\n{output}"
        assert dump_tables(wh, volatile=False) == expected, f"round {round_}: {commands}"
        assert watermark(wh) == last.isoformat()


@pytest.mark.parametrize("workers", [1, 3])
def test_sqlite_windows_in_parallel_take_turns_to_write(
    sqlite_warehouse: TestWarehouse, make_sim: Any, tmp_path: Path, workers: int
) -> None:
    """SQLite has one writer: windows in parallel download their exports ahead (to disk) and
    write one at a time, and a window waiting its turn longer than SQLite's busy timeout does
    not fail. The slow server makes each download take about a second."""
    config = config_for(tmp_path)
    etl("migrate", wh=sqlite_warehouse, config=config, check=True)
    slow = make_sim(faults=Faults(trickle_bytes_per_s=40_000))
    result = etl(
        "run", "--until", UNTIL, "--workers", str(workers), wh=sqlite_warehouse, api=slow,
        config=config, check=True,
    )  # fmt: skip
    assert "(5/5)" in result.stderr
    assert watermark(sqlite_warehouse) == parse_instant(UNTIL, OSLO).astimezone(UTC).isoformat()
    # Downloads overlapped (they are what waits on the server), one per worker at most.
    peak = slow.exports_in_flight_peak
    assert peak == 1 if workers == 1 else 2 <= peak <= workers


def _pipeline_settings() -> dict[str, Any]:
    return {"start": START, "window": "1d", "lag": "2h", "timezone": "Europe/Oslo"}


def test_api_max_concurrency_caps_the_requests_in_flight_over_all_windows(
    pg_warehouse: TestWarehouse, make_sim: Any, tmp_path: Path
) -> None:
    slow = make_sim(faults=Faults(trickle_bytes_per_s=40_000))
    config = write_config(tmp_path, pipeline=_pipeline_settings(), api={"max_concurrency": 2})
    etl("migrate", wh=pg_warehouse, config=config, check=True)
    result = etl(
        "run", "--until", UNTIL, "--workers", "4", wh=pg_warehouse, api=slow, config=config,
        check=True,
    )  # fmt: skip
    assert "(5/5)" in result.stderr
    assert slow.exports_in_flight_peak == 2  # windows overlapped, never more than two
    assert slow.refused_at_capacity == 0


def test_more_workers_than_the_server_accepts_settle_at_what_it_accepts(
    pg_warehouse: TestWarehouse, make_sim: Any, tmp_path: Path
) -> None:
    """The server answers two exports at once and refuses more with 429 (Retry-After: 1).
    Four workers, and each window may try only twice: had each window backed off on its own,
    the refused ones would come back while the first two still stream, and fail. The refusals
    lower what the run sends at once to what the server takes, and pause every window."""
    capped = make_sim(faults=Faults(trickle_bytes_per_s=20_000), max_concurrent=2)
    retry = {"initial_wait": 0.05, "max_wait": 5, "max_attempts": 2}
    config = write_config(tmp_path, pipeline=_pipeline_settings(), retry=retry)
    etl("migrate", wh=pg_warehouse, config=config, check=True)
    result = etl(
        "run", "--until", UNTIL, "--workers", "4", wh=pg_warehouse, api=capped, config=config,
        check=True,
    )  # fmt: skip
    assert "(5/5)" in result.stderr
    assert 1 <= capped.refused_at_capacity <= 4, result.stderr
    assert "export request(s) in flight from now on" in result.stderr
    assert watermark(pg_warehouse) == parse_instant(UNTIL, OSLO).astimezone(UTC).isoformat()


@pytest.mark.parametrize(
    ("error", "says"),
    [
        (psycopg.errors.DeadlockDetected, "to break a deadlock with another window"),
        (psycopg.errors.LockNotAvailable, "gave up waiting (pipeline.claim_timeout)"),
        (psycopg.errors.SerializationFailure, "to break a deadlock with another window"),
    ],
)
def test_windows_that_block_each_other_are_retried_and_said_so(
    error: type[psycopg.Error], says: str
) -> None:
    """psycopg raises these as OperationalError, which alone reads as a lost connection."""
    from etl.pipeline.runner import database_error

    assert issubclass(error, psycopg.OperationalError)
    found = database_error(error("it happened"), "window [a, b)")
    assert found.retryable and says in str(found) and "connection was lost" not in str(found)


def test_a_sqlite_file_another_process_keeps_locked_is_said_to_be_busy(tmp_path: Path) -> None:
    """SQLite raises "database is locked" as OperationalError, which alone reads as a lost
    connection; here the other writer holds the lock past a busy timeout of 0."""
    import sqlite3

    from sqlalchemy import create_engine
    from sqlalchemy.exc import OperationalError

    from etl.pipeline.runner import database_error

    path = tmp_path / "busy.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 0})
    try:
        with pytest.raises(OperationalError) as raised, engine.connect() as conn:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
    finally:
        engine.dispose()
        holder.close()
    found = database_error(raised.value, "etl forget", undone="nothing was erased: run it again")
    assert "was busy: another process (a load?) held the SQLite file's write lock" in str(found)
    assert "connection was lost" not in str(found)


def test_a_sqlite_file_that_cannot_be_written_is_refused_not_lost(tmp_path: Path) -> None:
    """A read-only file: writing again at once fails the same way, so it is not retried."""
    import sqlite3

    from sqlalchemy import create_engine
    from sqlalchemy.exc import OperationalError

    from etl.pipeline.runner import database_error

    path = tmp_path / "readonly.db"
    sqlite3.connect(path).execute("CREATE TABLE t (x int)").connection.close()
    engine = create_engine(f"sqlite:///file:{path}?mode=ro&uri=true")
    try:
        with pytest.raises(OperationalError) as raised, engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO t VALUES (1)")
    finally:
        engine.dispose()
    found = database_error(raised.value, "window [a, b)")
    assert not found.retryable
    assert "refused the write (attempt to write a readonly database)" in str(found)
