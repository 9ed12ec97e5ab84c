"""The `etl` command's surface: help, exit codes for bad input, migrate --sql, status, keep_raw."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import text

from tests.conftest import SEED_EXPORT, SIM_TOKEN, TestWarehouse
from tests.pipeline.cli_helpers import etl, write_config


def test_help_lists_commands_and_exit_codes(sqlite_warehouse: TestWarehouse) -> None:
    result = etl("--help", wh=sqlite_warehouse, extra_env={"ETL_API_TOKEN": SIM_TOKEN})
    assert result.code == 0
    for command in ("migrate", "run", "backfill", "load-file", "status", "fake-api"):
        assert command in result.stdout
    assert "6 another run holds the lock" in " ".join(result.stdout.split())
    assert SIM_TOKEN not in result.output
    for sub in ("run", "backfill", "fake-api"):
        sub_help = etl(
            sub,
            "--help",
            wh=sqlite_warehouse,
            extra_env={"ETL_API_TOKEN": SIM_TOKEN, "FAKE_API_TOKEN": SIM_TOKEN},
        )
        assert sub_help.code == 0 and SIM_TOKEN not in sub_help.output


def test_migrate_sql_prints_ddl_without_touching_the_database(
    sqlite_warehouse: TestWarehouse,
) -> None:
    result = etl("migrate", "--sql", wh=sqlite_warehouse, check=True)
    assert "CREATE TABLE conversations" in result.stdout
    assert "CREATE TABLE etl_state" in result.stdout
    assert not Path(sqlite_warehouse.url.removeprefix("sqlite:///")).exists()


def test_bad_config_exits_2_naming_key_and_file(
    sqlite_warehouse: TestWarehouse, tmp_path: Path
) -> None:
    config = write_config(tmp_path, pipeline={"window": "forever"})
    result = etl("status", wh=sqlite_warehouse, config=config)
    assert result.code == 2
    assert "pipeline.window" in result.stderr and str(config) in result.stderr
    assert "Traceback" not in result.output


def test_missing_token_and_bad_dates_exit_2(sqlite_warehouse: TestWarehouse) -> None:
    etl("migrate", wh=sqlite_warehouse, check=True)
    no_token = etl(
        "backfill",
        "--from",
        "2024-01-01",
        "--to",
        "2024-01-02",
        wh=sqlite_warehouse,
        extra_env={"ETL_API_URL": "http://127.0.0.1:9"},
    )
    assert no_token.code == 2 and "ETL_API_TOKEN" in no_token.stderr
    env = {"ETL_API_URL": "http://127.0.0.1:9", "ETL_API_TOKEN": SIM_TOKEN}
    reversed_range = etl(
        "backfill", "--from", "2024-01-02", "--to", "2024-01-01", wh=sqlite_warehouse, extra_env=env
    )
    assert reversed_range.code == 2 and "is not before" in reversed_range.stderr
    bad_date = etl(
        "backfill", "--from", "yesterday", "--to", "2024-01-01", wh=sqlite_warehouse, extra_env=env
    )
    assert bad_date.code == 2 and "--from" in bad_date.stderr
    bad_url = etl("status", wh=sqlite_warehouse, extra_env={"ETL_API_URL": "not a url"})
    assert bad_url.code == 2 and "ETL_API_URL" in bad_url.stderr


def test_database_unreachable_is_a_clear_database_error(tmp_path: Path) -> None:
    wh = TestWarehouse(
        "postgres", "postgresql+psycopg://postgres:pw-s3cret-xyz@127.0.0.1:1/none", None
    )
    result = etl("status", wh=wh)
    assert result.code == 7, result.output
    assert "127.0.0.1:1" in result.stderr and "pw-s3cret-xyz" not in result.output
    assert "Traceback" not in result.output


def test_status_json_reports_watermark_runs_and_counts(
    warehouse: TestWarehouse, make_sim: Any, tmp_path: Path
) -> None:
    api = make_sim()
    etl("migrate", wh=warehouse, check=True)
    etl("backfill", "--from", "2024-03-28", "--to", "2024-03-30", wh=warehouse, api=api, check=True)
    status = json.loads(etl("status", "--json", wh=warehouse, check=True).stdout)
    assert status["states"][0]["watermark"] == "2024-03-30T00:00:00+00:00"
    assert status["states"][0]["lag_seconds"] > 0
    assert [r["outcome"] for r in status["runs"]] == ["ok", "ok"]
    assert all(r["conversations_per_second"] for r in status["runs"])
    assert status["tables"]["conversations"] == len(
        api.matching_ids(
            *(
                __import__("datetime").datetime.fromisoformat(d)
                for d in ("2024-03-28T00:00:00+00:00", "2024-03-30T00:00:00+00:00")
            )
        )
    )
    text_status = etl("status", wh=warehouse, check=True).stdout
    assert "Watermark: 2024-03-30T00:00:00+00:00" in text_status and "conversations" in text_status


def test_keep_raw_stores_the_whole_conversation(warehouse: TestWarehouse, tmp_path: Path) -> None:
    config = write_config(tmp_path, warehouse={"keep_raw": True})
    etl("migrate", wh=warehouse, config=config, check=True)
    etl("load-file", str(SEED_EXPORT), wh=warehouse, config=config, check=True)
    engine = warehouse.engine()
    try:
        with engine.connect() as conn:
            raw = conn.execute(text(f"SELECT raw FROM {warehouse.table('conversations')}")).scalar()
    finally:
        engine.dispose()
    raw = json.loads(raw) if isinstance(raw, str) else raw
    expected = json.loads(SEED_EXPORT.read_text())[1]
    assert raw == expected


def test_log_format_json_lines(sqlite_warehouse: TestWarehouse) -> None:
    etl("migrate", wh=sqlite_warehouse, check=True)
    result = etl(
        "--log-format", "json", "load-file", str(SEED_EXPORT), wh=sqlite_warehouse, check=True
    )
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    assert lines and all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    assert any("1 conversations" in line["message"] for line in lines)


def test_an_unreachable_warehouse_is_named_so_and_nothing_claims_a_rollback(
    sqlite_warehouse: TestWarehouse,
) -> None:
    """Nothing was connected, so nothing was lost or rolled back; the password stays hidden."""
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"postgresql://etl:Unreach4ble-pw@127.0.0.1:{port}/warehouse"
    for command in (("status",), ("migrate",), ("run", "--dry-run")):
        result = etl(
            *command,
            wh=sqlite_warehouse,
            extra_env={
                "ETL_DATABASE_URL": url,
                "ETL_API_URL": "http://127.0.0.1:1",
                "ETL_API_TOKEN": SIM_TOKEN,
            },
        )
        assert result.code == 7, (command, result.output)
        assert "the warehouse is unreachable" in result.stderr, command
        assert "was lost" not in result.stderr and "rolled back" not in result.stderr, command
        assert "Unreach4ble-pw" not in result.output, command


def test_status_refuses_a_negative_number_of_runs(sqlite_warehouse: TestWarehouse) -> None:
    """Not 'LIMIT must not be negative' from PostgreSQL and every run from SQLite."""
    result = etl("status", "--runs", "-1", wh=sqlite_warehouse)
    assert result.code == 2
    assert "--runs" in result.stderr


def test_usage_errors_are_json_lines_when_json_logs_are_asked_for(
    sqlite_warehouse: TestWarehouse, tmp_path: Path
) -> None:
    """Also when click refuses the command line before the logging options are taken."""
    for args in (
        ("--log-format", "json", "nosuchcommand"),
        ("--log-format=json", "--config", str(tmp_path), "status"),  # a directory
        ("--log-format", "json", "status", "--runs", "-1"),
    ):
        result = etl(*args, wh=sqlite_warehouse)
        assert result.code == 2, args
        lines = result.stderr.strip().splitlines()
        assert lines and all(json.loads(line)["level"] == "error" for line in lines), args
