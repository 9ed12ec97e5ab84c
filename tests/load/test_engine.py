"""SQLite transactions: writers lock up front, readers never wait behind a loading window."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import OperationalError

from etl.load.engine import begin_write, make_engine
from tests.conftest import TestWarehouse


def _impatient(url: str):  # type: ignore[no-untyped-def]
    """An engine whose connections fail at once instead of waiting for a lock."""
    engine = make_engine(url)
    event.listen(engine, "connect", lambda conn, _rec: conn.execute("PRAGMA busy_timeout=0"))
    return engine


def test_reader_is_not_blocked_by_an_open_write_transaction(
    sqlite_warehouse: TestWarehouse,
) -> None:
    writer = make_engine(sqlite_warehouse.url)
    with begin_write(writer) as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
    reader = _impatient(sqlite_warehouse.url)
    try:
        with begin_write(writer) as conn:
            conn.execute(text("INSERT INTO t VALUES (1)"))
            with (
                reader.connect() as other
            ):  # would raise "database is locked" under BEGIN IMMEDIATE
                assert other.execute(text("SELECT count(*) FROM t")).scalar() == 0
            with pytest.raises(OperationalError, match="locked"), begin_write(reader) as second:
                second.execute(text("SELECT 1"))
        with reader.connect() as other:
            assert other.execute(text("SELECT count(*) FROM t")).scalar() == 1
    finally:
        writer.dispose()
        reader.dispose()


def test_a_sqlite_file_must_exist_when_asked_also_as_a_uri_filename(tmp_path: Path) -> None:
    """status, report and the loads refuse a path that is not there (a typo would otherwise
    make an empty warehouse); a read-only URI filename of an existing file is fine."""
    import sqlite3

    from etl.errors import ConfigError

    path = tmp_path / "w.db"
    for url in (f"sqlite:///{path}", f"sqlite:///file:{path}?mode=ro&uri=true"):
        with pytest.raises(ConfigError, match="does not exist"):
            make_engine(url, must_exist=True)
    assert not path.exists()
    sqlite3.connect(path).close()
    for url in (f"sqlite:///{path}", f"sqlite:///file:{path}?mode=ro&uri=true"):
        engine = make_engine(url, must_exist=True)
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT 1").scalar() == 1
        engine.dispose()
