"""Binary and text COPY store the same values in PostgreSQL, for every table's columns."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from psycopg import sql
from sqlalchemy.engine import make_url

from etl.load.copyformat import (
    BINARY_FORMAT,
    BINARY_HEADER,
    BINARY_TRAILER,
    LOAD_COLUMNS,
    TEXT_FORMAT,
    CopyFormat,
    loader_fields,
)
from etl.normalize import TABLE_COLUMNS
from tests.conftest import needs_accelerator
from tests.load.test_ccopy import _rows

pytestmark = [pytest.mark.postgres, needs_accelerator(BINARY_FORMAT is not None)]

EXPORTED = datetime(2024, 4, 1, 12, tzinfo=UTC)
LOADED = datetime(2024, 4, 2, 8, 30, 0, 123456, tzinfo=UTC)


def _copy_data(table: str, rows: list[tuple[Any, ...]], copy_format: CopyFormat) -> bytes:
    """What the loader sends for `rows`: conversations get content_hash and the loader fields."""
    formatters = copy_format.formatters(plain=False)
    if table != "conversations":
        data = formatters[table](rows)
    else:
        suffix = loader_fields(EXPORTED, LOADED, "run\t1", copy_format.binary)
        if copy_format.binary:
            data = b"".join(formatters[table]([(*row, "hash")]) + suffix for row in rows)
        else:
            data = b"".join(formatters[table]([row])[:-1] + b"\thash" + suffix for row in rows)
    return BINARY_HEADER + data + BINARY_TRAILER if copy_format.binary else data


def _load(cur: psycopg.Cursor[Any], table: str, target: str, data: bytes, binary: bool) -> None:
    columns = TABLE_COLUMNS[table] + (LOAD_COLUMNS if table == "conversations" else ())
    statement = sql.SQL("COPY {} ({}) FROM STDIN{}").format(
        sql.Identifier(target),
        sql.SQL(", ").join(map(sql.Identifier, columns)),
        sql.SQL(" (FORMAT binary)" if binary else ""),
    )
    with cur.copy(statement) as copy:
        copy.write(data)


@pytest.fixture(scope="module")
def connection(pg_server: str) -> Any:
    url = make_url(pg_server).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url) as conn:
        # Temporary copies of the warehouse tables (columns, types, NOT NULL; no keys).
        from sqlalchemy.dialects import postgresql
        from sqlalchemy.schema import CreateTable

        from etl.load.schema import build_metadata

        for table in TABLE_COLUMNS:
            ddl = str(
                CreateTable(build_metadata().tables[table]).compile(dialect=postgresql.dialect())
            )
            conn.execute(ddl.replace(f"CREATE TABLE {table}", f"CREATE TEMP TABLE t_{table}", 1))
            conn.execute(f"CREATE TEMP TABLE b_{table} (LIKE t_{table})")
            conn.execute(f"ALTER TABLE t_{table} DROP CONSTRAINT pk_{table}")
        conn.commit()
        yield conn


def test_binary_and_text_copies_read_back_equal(connection: psycopg.Connection[Any]) -> None:
    assert BINARY_FORMAT is not None

    @settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(_rows(plain=False, binary=True))
    def check(drawn: tuple[str, list[tuple[Any, ...]]]) -> None:
        table, rows = drawn
        rows = [_storable(row) for row in rows]
        with connection.transaction(force_rollback=True), connection.cursor() as cur:
            _load(cur, table, f"t_{table}", _copy_data(table, rows, TEXT_FORMAT), False)
            _load(cur, table, f"b_{table}", _copy_data(table, rows, BINARY_FORMAT), True)
            text_rows = cur.execute(f"SELECT * FROM t_{table}").fetchall()
            binary_rows = cur.execute(f"SELECT * FROM b_{table}").fetchall()
        assert len(text_rows) == len(rows)
        assert sorted(map(repr, binary_rows)) == sorted(map(repr, text_rows))

    check()


def _storable(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """Offsets within ±15:59, the limit of PostgreSQL's text input (the normalizer writes UTC)."""

    def fix(value: Any) -> Any:
        if isinstance(value, datetime) and abs(value.utcoffset() or timedelta(0)) >= _MAX_OFFSET:
            return value.astimezone(UTC)
        return value

    return tuple(fix(v) for v in row)


_MAX_OFFSET = timedelta(hours=16)
