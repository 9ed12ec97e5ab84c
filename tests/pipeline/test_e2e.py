"""End to end through the real `etl` command, the simulator and both warehouses."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from etl.fakeapi import Faults
from etl.windows import parse_instant, parse_zone
from tests.conftest import TestWarehouse, dump_tables
from tests.pipeline.cli_helpers import etl, write_config

OSLO = parse_zone("Europe/Oslo")
START = "2024-03-28"
UNTIL = "2024-04-02"  # the range spans the 2024-03-31 DST switch in Europe/Oslo


def ids_in(wh: TestWarehouse, table: str = "conversations", column: str = "id") -> list[int]:
    engine = wh.engine()
    try:
        with engine.connect() as conn:
            return sorted(
                r[0] for r in conn.execute(text(f"SELECT {column} FROM {wh.table(table)}"))
            )
    finally:
        engine.dispose()


def watermark(wh: TestWarehouse) -> str | None:
    engine = wh.engine()
    try:
        with engine.connect() as conn:
            value = conn.execute(text(f"SELECT watermark FROM {wh.table('etl_state')}")).scalar()
    finally:
        engine.dispose()
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC).isoformat()


def config_for(tmp_path: Path, **pipeline: Any) -> Path:
    settings = {"start": START, "window": "1d", "lag": "2h", "timezone": "Europe/Oslo"}
    settings.update(pipeline)
    return write_config(tmp_path, pipeline=settings)


def test_run_loads_exactly_what_matches_then_converges(
    warehouse: TestWarehouse, make_sim: Any, tmp_path: Path
) -> None:
    api = make_sim()
    config = config_for(tmp_path)
    etl("migrate", wh=warehouse, config=config, check=True)
    first = etl("run", "--until", UNTIL, wh=warehouse, api=api, config=config, check=True)
    assert "5 window(s)" in first.stderr
    expected = api.matching_ids(parse_instant(START, OSLO), parse_instant(UNTIL, OSLO))
    assert ids_in(warehouse) == sorted(expected)
    assert watermark(warehouse) == parse_instant(UNTIL, OSLO).astimezone(UTC).isoformat()
    loaded = dump_tables(warehouse, volatile=True)

    again = etl("run", "--until", UNTIL, wh=warehouse, api=api, config=config, check=True)
    assert "the watermark is at or past --until; nothing to load" in again.stderr
    assert dump_tables(warehouse, volatile=True) == loaded

    backfill = etl(
        "backfill",
        "--from",
        START,
        "--to",
        UNTIL,
        "--window",
        "6h",
        wh=warehouse,
        api=api,
        config=config,
        check=True,
    )
    assert "20 window(s)" in backfill.stderr
    assert dump_tables(warehouse, volatile=True) == loaded  # not even loaded_at changed
    assert watermark(warehouse) == parse_instant(UNTIL, OSLO).astimezone(UTC).isoformat()


def export_messages(api: Any, start: str, end: str) -> dict[int, list[int]]:
    """Conversation id -> message ids, as one export of [start, end) shows them now."""
    from etl.config import ApiSettings
    from etl.extract import ExportClient
    from etl.secrets import Secret
    from etl.windows import Window
    from tests.conftest import SIM_TOKEN

    client = ExportClient(ApiSettings(url=api.url, token=Secret(SIM_TOKEN)))
    with client.open(Window(parse_instant(start, OSLO), parse_instant(end, OSLO))) as stream:
        return {c["id"]: [m["id"] for m in c["messages"]] for c in stream}


def messages_by_conversation(wh: TestWarehouse) -> dict[int, list[int]]:
    engine = wh.engine()
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    f"SELECT conversation_id, id FROM {wh.table('messages')} ORDER BY conversation_id, position"
                )
            ).all()
    finally:
        engine.dispose()
    out: dict[int, list[int]] = {}
    for conversation_id, message_id in rows:
        out.setdefault(conversation_id, []).append(message_id)
    return out


def test_windows_across_dst_lose_and_duplicate_nothing(
    warehouse: TestWarehouse, make_sim: Any, tmp_path: Path
) -> None:
    api = make_sim()
    config = config_for(tmp_path, window="5h")
    etl("migrate", wh=warehouse, config=config, check=True)
    start, end = "2024-03-30", "2024-04-01T12:00:00+02:00"
    result = etl(
        "backfill", "--from", start, "--to", end, wh=warehouse, api=api, config=config, check=True
    )
    assert (
        "12 window(s)" in result.stderr
    )  # 59 real hours (one lost to DST): 11 of 5 h and one of 4 h
    one_window = export_messages(api, start, end)
    assert ids_in(warehouse) == sorted(one_window)
    assert messages_by_conversation(warehouse) == {k: v for k, v in one_window.items() if v}


def test_conversation_growing_into_next_window_ends_up_whole(
    warehouse: TestWarehouse, make_sim: Any, tmp_path: Path
) -> None:
    api = make_sim(now=datetime(2024, 3, 29, 13, 0, tzinfo=OSLO))
    config = config_for(tmp_path, window="6h", lag="0s")
    etl("migrate", wh=warehouse, config=config, check=True)
    etl(
        "run",
        "--until",
        "2024-03-29T12:00:00+01:00",
        wh=warehouse,
        api=api,
        config=config,
        check=True,
    )
    first_copy = messages_by_conversation(warehouse)
    api.now = datetime(2024, 3, 31, 12, 0, tzinfo=OSLO)
    etl(
        "run",
        "--until",
        "2024-03-30T12:00:00+01:00",
        wh=warehouse,
        api=api,
        config=config,
        check=True,
    )
    before = export_messages(api, "2024-03-28", "2024-03-29T12:00:00+01:00")
    after = export_messages(api, "2024-03-29T12:00:00+01:00", "2024-03-30T12:00:00+01:00")
    spanning = set(before) & set(after)
    grown = [cid for cid in spanning if len(after[cid]) > len(first_copy.get(cid, []))]
    assert grown, "the dataset should hold a conversation that grew after the first run"
    stored = messages_by_conversation(warehouse)
    for cid in spanning:
        assert stored[cid] == after[cid]  # every message, once, in order


def test_broken_stream_is_retried_and_converges(
    warehouse: TestWarehouse, make_sim: Any, tmp_path: Path
) -> None:
    config = config_for(tmp_path)
    etl("migrate", wh=warehouse, config=config, check=True)
    flaky = make_sim(faults=Faults(truncate_after=5, truncate_times=2))
    result = etl("run", "--until", UNTIL, wh=warehouse, api=flaky, config=config, check=True)
    assert "retrying" in result.stderr
    assert flaky.export_requests == 5 + 2
    broken_then_fixed = dump_tables(warehouse)
    assert ids_in(warehouse) == sorted(
        flaky.matching_ids(parse_instant(START, OSLO), parse_instant(UNTIL, OSLO))
    )
    assert broken_then_fixed["conversations"]


def test_permanent_fault_stops_at_last_good_window(
    warehouse: TestWarehouse, make_sim: Any, tmp_path: Path
) -> None:
    config = config_for(tmp_path)
    etl("migrate", wh=warehouse, config=config, check=True)
    good = make_sim()
    etl("run", "--until", "2024-03-30", wh=warehouse, api=good, config=config, check=True)
    before = dump_tables(warehouse, volatile=True)
    port = good.port
    good.stop()  # the same site (URL) keeps the same watermark: reuse the port
    broken = make_sim(faults=Faults(error_after=3), port=port)
    result = etl("run", "--until", UNTIL, wh=warehouse, api=broken, config=config)
    assert result.code == 4, result.output
    assert "window [2024-03-29T23:00:00+00:00, 2024-03-30T23:00:00+00:00)" in result.stderr
    assert "mid-stream" in result.stderr and "gave up after 3 attempt(s)" in result.stderr
    assert broken.export_requests == 3  # max_attempts
    assert watermark(warehouse) == parse_instant("2024-03-30", OSLO).astimezone(UTC).isoformat()
    after = dump_tables(warehouse, volatile=True)
    assert {k: v for k, v in after.items()} == before
    status = json.loads(etl("status", "--json", wh=warehouse, config=config, check=True).stdout)
    assert status["runs"][0]["outcome"] == "failed" and "mid-stream" in status["runs"][0]["error"]


def test_two_concurrent_runs(warehouse: TestWarehouse, make_sim: Any, tmp_path: Path) -> None:
    """PostgreSQL: a second `etl run` started while one is loading does not wait and does not
    fail: it takes the windows the first has not claimed (etl_windows), and between them each
    window is loaded once; the watermark ends at the end of the range. SQLite (one writer): the
    second is refused at once with the lock's exit code."""
    config = config_for(tmp_path)
    etl("migrate", wh=warehouse, config=config, check=True)
    slow = make_sim(faults=Faults(trickle_bytes_per_s=20_000))
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("ETL_")}
    env.update(
        warehouse.env(),
        ETL_API_URL=slow.url,
        ETL_API_TOKEN=__import__("tests.conftest").conftest.SIM_TOKEN,
    )
    first = subprocess.Popen(
        [sys.executable, "-m", "etl", "--config", str(config), "run", "--until", UNTIL],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while slow.export_requests == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert slow.export_requests >= 1
        second = etl("run", "--until", UNTIL, wh=warehouse, api=slow, config=config)
        first_still_running = first.poll() is None  # the second did not queue behind it
        _, first_log = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    assert first.returncode == 0, first_log
    if warehouse.kind == "sqlite":
        assert second.code == 6, second.output
        assert "holds the lock" in second.stderr
        assert first_still_running, "the second run waited for the first instead of refusing"
        return
    assert second.code == 0, second.output + first_log
    assert "left to another run" in second.stderr
    loaded = [
        line.split(")")[0]
        for output in (first_log, second.stderr)
        for line in output.splitlines()
        if " loaded (" in line
    ]
    assert len(loaded) == len(set(loaded)) == 5, loaded  # each window once, by one of them
    assert slow.export_requests == 5
    expected = slow.matching_ids(parse_instant(START, OSLO), parse_instant(UNTIL, OSLO))
    assert ids_in(warehouse) == sorted(expected)
    assert watermark(warehouse) == parse_instant(UNTIL, OSLO).astimezone(UTC).isoformat()


def test_windows_in_parallel_load_what_a_serial_run_loads(
    warehouse: TestWarehouse, make_sim: Any, tmp_path: Path
) -> None:
    api = make_sim()
    config = config_for(tmp_path)
    etl("migrate", wh=warehouse, config=config, check=True)
    serial = etl("run", "--until", UNTIL, wh=warehouse, api=api, config=config, check=True)
    assert "(5/5)" in serial.stderr
    expected = dump_tables(warehouse, volatile=False)
    mark = watermark(warehouse)
    engine = warehouse.engine()
    try:
        with engine.begin() as conn:  # empty it all, then again with 4 workers
            for table in ("conversations", "messages", "content", "buttons", "intent_analysis",
                          "intents", "actions", "etl_state", "etl_windows"):  # fmt: skip
                conn.execute(text(f"DELETE FROM {warehouse.table(table)}"))
    finally:
        engine.dispose()
    parallel = etl(
        "run", "--until", UNTIL, "--workers", "4", wh=warehouse, api=api, config=config,
        check=True,
    )  # fmt: skip
    assert "(5/5)" in parallel.stderr
    assert dump_tables(warehouse, volatile=False) == expected
    assert watermark(warehouse) == mark


def test_dry_run_prints_windows_and_loads_nothing(
    warehouse: TestWarehouse, make_sim: Any, tmp_path: Path
) -> None:
    api = make_sim()
    config = config_for(tmp_path)
    etl("migrate", wh=warehouse, config=config, check=True)
    result = etl(
        "run", "--until", UNTIL, "--dry-run", wh=warehouse, api=api, config=config, check=True
    )
    assert len(result.stdout.strip().splitlines()) == 5
    assert api.export_requests == 0
    assert ids_in(warehouse) == []


def test_a_run_cut_at_an_odd_time_goes_on_along_the_window_grid(
    sqlite_warehouse: TestWarehouse, make_sim: Any, tmp_path: Path
) -> None:
    """A run's last window ends at now − lag, at any time; the next run's first window ends
    at the next boundary of pipeline.start's grid, and the others follow it."""
    api, config, wh = make_sim(), config_for(tmp_path), sqlite_warehouse
    etl("migrate", wh=wh, config=config, check=True)
    odd = "2024-03-29T10:17:33.250000+01:00"
    etl("run", "--until", odd, wh=wh, api=api, config=config, check=True)
    assert watermark(wh) == parse_instant(odd, UTC).astimezone(UTC).isoformat()
    result = etl("run", "--until", UNTIL, "--dry-run", wh=wh, api=api, config=config, check=True)
    oslo = parse_zone("Europe/Oslo")
    midnights = [parse_instant(day, oslo).astimezone(UTC) for day in ("2024-03-30", "2024-03-31")]
    expected = [
        (parse_instant(odd, UTC).astimezone(UTC), midnights[0]),
        (midnights[0], midnights[1]),
        (midnights[1], midnights[1] + (midnights[1] - midnights[0])),  # UTC days: 01:00 CEST
    ]
    printed = [line.split()[:2] for line in result.stdout.strip().splitlines()]
    assert printed[: len(expected)] == [[a.isoformat(), b.isoformat()] for a, b in expected]


def test_run_without_migrate_says_what_to_do(
    sqlite_warehouse: TestWarehouse, make_sim: Any, tmp_path: Path
) -> None:
    result = etl(
        "run", "--until", UNTIL, wh=sqlite_warehouse, api=make_sim(), config=config_for(tmp_path)
    )
    assert result.code == 2 and "etl migrate" in result.stderr


def test_load_file_replays_saved_exports(warehouse: TestWarehouse, tmp_path: Path) -> None:
    from tests.conftest import SEED_EXPORT

    etl("migrate", wh=warehouse, check=True)
    import gzip
    import shutil

    gz = tmp_path / "export.json.gz"
    with SEED_EXPORT.open("rb") as src, gzip.open(gz, "wb") as dst:
        shutil.copyfileobj(src, dst)
    result = etl("load-file", str(SEED_EXPORT), str(gz), wh=warehouse, check=True)
    assert "2 file(s)" in result.stderr
    assert ids_in(warehouse) == [1000001]
    assert len(ids_in(warehouse, "messages")) == 4
    assert watermark(warehouse) is None


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("change", "expected"),
    [
        # A column type changed by hand: binary COPY no longer fits it (text COPY did).
        ("ALTER TABLE {s}.messages ALTER COLUMN position TYPE bigint", "column position"),
        # A constraint of the owner's that the export's data breaks.
        ("ALTER TABLE {s}.content ADD CHECK (length(text) < 3)", "content_text_check"),
    ],
)
def test_a_warehouse_refusing_the_rows_is_a_database_error_naming_the_place(
    pg_warehouse: TestWarehouse, change: str, expected: str
) -> None:
    from tests.conftest import SEED_EXPORT

    etl("migrate", wh=pg_warehouse, check=True)
    engine = pg_warehouse.engine()
    try:
        with engine.begin() as conn:
            conn.execute(text(change.format(s=f'"{pg_warehouse.schema}"')))
    finally:
        engine.dispose()
    result = etl("load-file", str(SEED_EXPORT), wh=pg_warehouse)
    assert result.code == 7, result.output  # ExitCode.DATABASE, not "a bug"
    assert "refused the write" in result.output and expected in result.output
    assert str(SEED_EXPORT) in result.output and "rolled back" in result.output
    assert "bug" not in result.output and "Failing row" not in result.output
    assert ids_in(pg_warehouse) == []
