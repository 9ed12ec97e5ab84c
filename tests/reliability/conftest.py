"""Fixtures of the reliability suite: password-carrying PostgreSQL URLs, the secrets check after
every test, and the clean-run reference each scenario's re-run must equal."""

from __future__ import annotations

import secrets as random_names
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.conftest import TestWarehouse
from tests.reliability import helpers as h


def with_password(url: str) -> str:
    return make_url(url).set(password=h.DB_PASSWORD).render_as_string(hide_password=False)


@pytest.fixture
def pg_warehouse(pg_warehouse: TestWarehouse) -> TestWarehouse:
    """The shared fixture's schema, reached through a URL with a password in it."""
    return replace(pg_warehouse, url=with_password(pg_warehouse.url))


@pytest.fixture(scope="session", autouse=True)
def etl_launcher() -> Iterator[None]:
    """One pre-imported parent to fork `etl` processes from (tests/reliability/launcher.py)."""
    yield
    h.close_launcher()


@pytest.fixture(autouse=True)
def no_secret_in_any_output() -> Iterator[None]:
    """Whatever failed, no `etl` output of the test may hold the token, secret or password."""
    h.OUTPUTS.clear()
    yield
    outputs, h.OUTPUTS[:] = list(h.OUTPUTS), []
    assert_no_secret(outputs)


def assert_no_secret(outputs: list[str]) -> None:
    for output in outputs:
        for secret in h.SECRETS:
            assert secret not in output, f"a secret leaked into the output:\n{output}"


@pytest.fixture(scope="session")
def clean_pg_schema(pg_server: str) -> Iterator[TestWarehouse]:
    """The PostgreSQL clean reference's own schema. A fixture of its own, so that it is dropped
    before the session's server stops, and only sessions that load PostgreSQL need a server."""
    schema = f"t_clean_{random_names.token_hex(4)}"
    url = make_url(pg_server).set(drivername="postgresql+psycopg")
    admin = create_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield TestWarehouse("postgres", with_password(url.render_as_string(False)), schema)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(scope="session")
def clean_reference(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, sim_dataset: Any
) -> Callable[[str], h.Snapshot]:
    """`reference(kind)`: the warehouse after a clean `etl run` of [START, UNTIL) (built once)."""
    from etl.fakeapi import FakeApi, FakeApiOptions
    from tests.conftest import SIM_TOKEN

    cache: dict[str, h.Snapshot] = {}

    def reference(kind: str) -> h.Snapshot:
        if kind in cache:
            return cache[kind]
        tmp = tmp_path_factory.mktemp(f"clean-{kind}")
        if kind == "sqlite":
            wh = TestWarehouse("sqlite", f"sqlite:///{tmp / 'clean.db'}", None)
        else:
            wh = request.getfixturevalue("clean_pg_schema")
        wh.migrate()
        with FakeApi(FakeApiOptions(dataset=sim_dataset, token=SIM_TOKEN)) as api:
            site = h.Site(lambda **_: api)
            site.api = api
            result = h.run("run", "--until", h.UNTIL, wh=wh, site=site, config=h.config(tmp))
        assert result.code == 0, result.output
        cache[kind] = h.snapshot(wh)
        assert cache[kind].watermark == h.UNTIL_UTC and cache[kind].conversations > 40
        return cache[kind]

    return reference
