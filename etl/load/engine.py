"""Engines for the warehouse: SQLite (embedded default) and PostgreSQL via psycopg 3."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from hashlib import blake2b
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from sqlalchemy import Connection, Engine, Table, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from etl.errors import ConfigError


def make_engine(url: str, *, connect_timeout: int = 10, must_exist: bool = False) -> Engine:
    """An engine tuned for bulk loads; `url` is a SQLAlchemy URL. `must_exist`: a SQLite file
    that is not there is a configuration error (a mistyped path), not a new empty warehouse,
    which only `etl migrate` creates."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = parsed.database or ""
        if path.startswith("file:"):  # a URI filename (uri=true): its path, without the query
            path = "" if parsed.query.get("mode") == "memory" else urlsplit(path).path
        if must_exist and path and path != ":memory:" and not Path(path).exists():
            raise ConfigError(
                f"warehouse.url names the SQLite file {Path(path).resolve()}, which does not "
                "exist: check the path (a relative one starts from the working directory), or "
                "run `etl migrate` to create the warehouse there"
            )
        # A window's connection passes from the run loop to its loading thread and back, never
        # used by both at once (etl.pipeline.loading): sqlite3 must not pin it to one thread.
        engine = create_engine(
            parsed,
            poolclass=NullPool,
            connect_args={"timeout": SQLITE_BUSY_SECONDS, "check_same_thread": False},
        )
        event.listen(engine, "connect", _sqlite_on_connect)
        # pysqlite's own transaction handling would commit behind our back; take control.
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    engine = create_engine(
        parsed.set(drivername="postgresql+psycopg"),
        poolclass=NullPool,
        connect_args={"connect_timeout": connect_timeout, "application_name": "convo-etl"},
    )
    event.listen(engine, "connect", _postgres_on_connect)
    return engine


def _postgres_on_connect(dbapi_conn: Any, _record: Any) -> None:
    # A window's session holds row locks to its commit. Should this machine die without
    # closing it, the server would keep the session, and other windows would wait for those
    # rows, until TCP gives up (about two hours by default): the server probes the client
    # instead, and ends the session within about a minute. Set once the session is open, in
    # one round trip, where nothing else set them (a startup `options` parameter of our own
    # would be refused by PgBouncer, and replace the user's).
    with dbapi_conn.cursor() as cursor:
        names, values = zip(*SERVER_KEEPALIVES, strict=True)
        cursor.execute(_SET_KEEPALIVES, [list(names), list(values)])
    dbapi_conn.commit()


# Server-side TCP keepalives for every session: idle seconds, then a probe every 10 s, 3 tries.
SERVER_KEEPALIVES: Final = (
    ("tcp_keepalives_idle", "30"),
    ("tcp_keepalives_interval", "10"),
    ("tcp_keepalives_count", "3"),
)
# Only where nothing set them (a DBA's server setting, ALTER ROLE, the URL's `options` win).
_SET_KEEPALIVES: Final = (
    "SELECT set_config(s.name, v.value, false) FROM pg_settings AS s "
    "JOIN unnest(%s::text[], %s::text[]) AS v(name, value) ON v.name = s.name "
    "WHERE s.source = 'default'"
)


# How long a SQLite write waits for another process's write transaction (a window loading)
# before it fails with "database is locked" (runner.database_error says so).
SQLITE_BUSY_SECONDS: Final = 30
_BUSY_TIMEOUT: Final = "PRAGMA busy_timeout=" + str(SQLITE_BUSY_SECONDS * 1000)


def _sqlite_on_connect(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None
    cursor = dbapi_conn.cursor()
    # WAL lets dashboards read while a window loads; NORMAL sync is durable at commit in WAL.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(_BUSY_TIMEOUT)
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    # A writer takes the write lock up front, so it never fails upgrading a read snapshot;
    # readers (status, watermark checks) stay deferred and never wait behind a loading window.
    write = conn.get_execution_options().get("etl_write", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


@contextmanager
def begin_write(engine: Engine) -> Iterator[Connection]:
    """A write transaction: committed on success, rolled back on any exception."""
    with engine.connect().execution_options(etl_write=True) as conn, conn.begin():
        yield conn


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def take_turns(conn: Connection, name: str) -> None:
    """Make transactions that call this with the same `name` run what follows one at a time,
    to their commit: on PostgreSQL an advisory lock held to the end of the transaction; SQLite
    runs one writing transaction at a time anyway."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": advisory_key(name)})


def advisory_key(name: str) -> int:
    """The key of a PostgreSQL advisory lock named `name` (a signed 64-bit integer)."""
    return int.from_bytes(blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)


def dialect_insert(conn: Connection, table: Table) -> Any:
    """The INSERT of `conn`'s dialect for `table`: it has ON CONFLICT on both warehouses."""
    inserts = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}
    return inserts[conn.dialect.name](table)
