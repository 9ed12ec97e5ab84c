"""Shared fixtures: throwaway warehouses on SQLite and PostgreSQL, and the simulator."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

# Imported here, at a shallow stack, rather than by hypothesis's pytest plugin at the end of a
# run that used no hypothesis test (`pytest tests/integrations`): pytest rewrites the plugin's
# package on import, and CPython 3.11.7's parser fails on it from deep in that call stack
# ("SystemError: AST constructor recursion depth mismatch", fixed in 3.11.8).
import hypothesis  # noqa: F401
import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from tests import pgserver

FIXTURES = Path(__file__).parent / "fixtures"
SEED_EXPORT = FIXTURES / "seed-example-export.json"
# A server of your own for the PostgreSQL tests; unset (or empty), the suite starts a throwaway
# embedded one (tests/pgserver.py) at the first PostgreSQL test and removes it at the end.
EXTERNAL_PG_URL = os.environ.get("ETL_TEST_DATABASE_URL") or None
IN_CI = bool(os.environ.get("CI"))


@dataclass
class TestWarehouse:
    """A database plus an optional schema that only this test uses."""

    __test__ = False

    kind: str
    url: str
    schema: str | None

    def engine(self) -> Engine:
        from etl.load.engine import make_engine

        return make_engine(self.url)

    def env(self) -> dict[str, str]:
        """Environment for an `etl` subprocess pointed at this warehouse."""
        env = {"ETL_DATABASE_URL": self.url}
        if self.schema:
            env["ETL_DATABASE_SCHEMA"] = self.schema
        return env

    def table(self, name: str) -> str:
        return f'"{self.schema}"."{name}"' if self.schema else f'"{name}"'

    def migrate(self) -> None:
        """The schema at the latest revision, as `etl migrate` leaves it (in-process)."""
        from etl.load.migrate import upgrade

        engine = self.engine()
        try:
            upgrade(engine, self.schema)
        finally:
            engine.dispose()


def _pg_available(url: str) -> str | None:
    try:
        engine = create_engine(make_url(url).set(drivername="postgresql+psycopg"))
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        engine.dispose()
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "no server"
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def _no_postgres(message: str) -> NoReturn:
    """Skip the PostgreSQL tests, or in CI (where they must never be skipped) fail them."""
    if IN_CI:
        pytest.fail(f"{message} (CI never skips PostgreSQL tests)", pytrace=False)
    pytest.skip(message)


# What the session's embedded server was, for the summary at the end of the run.
_EMBEDDED = pytest.StashKey[str]()


@pytest.fixture(scope="session")
def pg_server(pytestconfig: pytest.Config) -> Iterator[str]:
    """SQLAlchemy URL of the PostgreSQL database the tests use, as a superuser.

    ETL_TEST_DATABASE_URL's server when it is set, else a throwaway embedded server on a free
    loopback port, stopped and deleted when the session ends (also after Ctrl-C or a failure).
    """
    if EXTERNAL_PG_URL:
        problem = _pg_available(EXTERNAL_PG_URL)
        if problem:
            shown = make_url(EXTERNAL_PG_URL).render_as_string()  # password masked
            _no_postgres(f"PostgreSQL at ETL_TEST_DATABASE_URL={shown} unreachable: {problem}")
        yield EXTERNAL_PG_URL
        return
    started = time.perf_counter()
    try:
        server = pgserver.start("test", pgserver.NOT_DURABLE)
    except pgserver.ServerError as exc:
        _no_postgres(f"could not start the embedded PostgreSQL server: {exc}")
    pytestconfig.stash[_EMBEDDED] = (
        f"embedded PostgreSQL {server.version} on {pgserver.HOST}:{server.port} "
        f"(started in {time.perf_counter() - started:.1f} s, in {server.base})"
    )
    try:
        yield server.url
    finally:
        server.stop()
        pytestconfig.stash[_EMBEDDED] += "; stopped and removed"


def pytest_report_header(config: pytest.Config) -> str:
    if EXTERNAL_PG_URL:
        shown = make_url(EXTERNAL_PG_URL).render_as_string()  # password masked
        return f"postgresql: ETL_TEST_DATABASE_URL={shown}"
    return "postgresql: a throwaway embedded server, started by the first PostgreSQL test"


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    if _EMBEDDED in config.stash:
        terminalreporter.write_line(f"postgresql: {config.stash[_EMBEDDED]}")


@pytest.fixture
def pg_warehouse(pg_server: str) -> Iterator[TestWarehouse]:
    yield from _pg_schema(pg_server)


@pytest.fixture
def another_pg_warehouse(pg_server: str) -> Iterator[TestWarehouse]:
    """A second throwaway schema, for comparing two loads side by side."""
    yield from _pg_schema(pg_server)


def _pg_schema(pg_server: str) -> Generator[TestWarehouse, None, None]:
    schema = f"t_{secrets.token_hex(6)}"
    url = (
        make_url(pg_server)
        .set(drivername="postgresql+psycopg")
        .render_as_string(hide_password=False)
    )
    admin = create_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield TestWarehouse("postgres", url, schema)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def sqlite_warehouse(tmp_path: Path) -> TestWarehouse:
    return TestWarehouse("sqlite", f"sqlite:///{tmp_path / 'warehouse.db'}", None)


@pytest.fixture(params=["sqlite", "postgres"])
def warehouse(request: pytest.FixtureRequest) -> TestWarehouse:
    """The same test on both warehouses."""
    name = "sqlite_warehouse" if request.param == "sqlite" else "pg_warehouse"
    result: TestWarehouse = request.getfixturevalue(name)
    return result


@pytest.fixture
def migrated(warehouse: TestWarehouse) -> TestWarehouse:
    warehouse.migrate()
    return warehouse


def dump_tables(wh: TestWarehouse, *, volatile: bool = False) -> dict[str, list[tuple[Any, ...]]]:
    """Every data table's rows, sorted, for row-by-row comparison between two loads.

    `volatile=False` leaves out the columns that record when, by which run and from which
    site (its URL: a simulator's port) a row was written, which legitimately differ between
    two equivalent loads.
    """
    from etl.normalize import TABLE_COLUMNS

    skip = set() if volatile else {"loaded_at", "load_run_id", "exported_at", "state_key"}
    engine = wh.engine()
    out: dict[str, list[tuple[Any, ...]]] = {}
    try:
        with engine.connect() as conn:
            for name in TABLE_COLUMNS:
                result = conn.execute(text(f"SELECT * FROM {wh.table(name)}"))
                keys = [k for k in result.keys() if k not in skip]
                rows = [tuple(str(row._mapping[k]) for k in keys) for row in result]
                out[name] = sorted(rows)
    finally:
        engine.dispose()
    return out


# -- the simulator ---------------------------------------------------------------------------

SIM_TOKEN = "sim-token-0123456789abcdef"
SIM_SECRET = "sim-client-secret-9876543210"


@pytest.fixture(scope="session")
def sim_dataset() -> Any:
    """A week of synthetic conversations around the 2024-03-31 DST switch, built once."""
    from datetime import date

    from etl.fakeapi import Dataset, DatasetSpec

    return Dataset.build(
        DatasetSpec(seed=7, start=date(2024, 3, 27), days=7, per_day=40), "Europe/Oslo"
    )


@pytest.fixture
def make_sim(sim_dataset: Any) -> Iterator[Any]:
    """Start simulators with FakeApiOptions overrides; all are stopped after the test."""
    from etl.fakeapi import FakeApi, FakeApiOptions

    started: list[Any] = []

    def make(**overrides: Any) -> Any:
        overrides.setdefault("dataset", sim_dataset)
        overrides.setdefault("token", SIM_TOKEN)
        overrides.setdefault("oauth_client_secret", SIM_SECRET)
        api = FakeApi(FakeApiOptions(**overrides)).start()
        started.append(api)
        return api

    yield make
    for api in started:
        api.stop()
