"""Least privilege and SQL construction (issue group 11).

The loader runs as a PostgreSQL role granted exactly what README "What happens when things
fail" documents (`LOADER_GRANTS` below is that text), and nothing else: it cannot create tables,
truncate, or touch another schema. A missing grant is a clear database error, not a traceback.
And no product SQL is built by formatting values into strings: checked on the source.
"""

from __future__ import annotations

import ast
import re
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ProgrammingError

from tests.conftest import TestWarehouse
from tests.reliability import helpers as h

pytestmark = pytest.mark.reliability

Reference = Callable[[str], h.Snapshot]

README = Path(__file__).parents[2] / "README.md"


def _readme_grants(after: str, role: str) -> Callable[[str, str], str]:
    """The GRANT statements of the README's first SQL block after `after` (for schema
    `chatbot` and `role`), as a function of another schema and role: the README's text is
    what is tested."""
    text = README.read_text()
    block = re.search(r"```sql\n(.*?)```", text[text.index(after) :], flags=re.DOTALL)
    assert block is not None, after
    grants = []
    for statement in block.group(1).split(";"):
        lines = [line for line in statement.splitlines() if not line.lstrip().startswith("--")]
        if "\n".join(lines).strip().startswith("GRANT"):
            grants.append("\n".join(lines).strip())
    assert grants, after

    def grants_for(schema: str, new_role: str) -> str:
        return ";\n".join(
            grant.replace("SCHEMA chatbot", f"SCHEMA {schema}")
            .replace("chatbot.", f"{schema}.")
            .replace(f"TO {role}", f"TO {new_role}")
            for grant in grants
        )

    return grants_for


# The README's grants (after `etl migrate` made the tables).
LOADER_GRANTS = _readme_grants("### Least privilege (PostgreSQL)", "etl_loader")
ERASER_GRANTS = _readme_grants("**A separate role for erasure**", "etl_eraser")


def _admin(url: str, sql: str) -> None:
    """Run `sql` as the superuser of `url` (the `pg_server` fixture)."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            for statement in filter(str.strip, sql.split(";")):
                conn.execute(text(statement))
    finally:
        engine.dispose()


@pytest.fixture
def loader(pg_server: str, pg_warehouse: TestWarehouse) -> Iterator[tuple[TestWarehouse, str]]:
    """A migrated schema, and a login role holding only the documented grants on it."""
    pg_warehouse.migrate()  # as the schema's owner
    role = f"etl_loader_{secrets.token_hex(4)}"
    schema = f'"{pg_warehouse.schema}"'
    _admin(pg_server, f"CREATE ROLE {role} LOGIN PASSWORD '{h.DB_PASSWORD}'")
    try:
        _admin(pg_server, LOADER_GRANTS(schema, role))
        url = make_url(pg_warehouse.url).set(username=role, password=h.DB_PASSWORD)
        yield TestWarehouse("postgres", url.render_as_string(False), pg_warehouse.schema), role
    finally:
        _admin(pg_server, f"DROP OWNED BY {role}; DROP ROLE {role}")


def test_loader_role_with_only_the_documented_grants_loads_everything(
    loader: tuple[TestWarehouse, str],
    make_sim: Any,
    tmp_path: Path,
    clean_reference: Reference,
) -> None:
    wh, role = loader
    site, cfg = h.Site(make_sim), h.config(tmp_path)
    site.serve()

    result = h.run("run", "--until", h.UNTIL, wh=wh, site=site, config=cfg)

    assert result.code == 0, result.output
    h.assert_same(h.snapshot(wh), clean_reference(wh.kind))
    assert h.run("status", wh=wh, config=cfg).code == 0
    again = h.run("backfill", "--from", h.START, "--to", h.UNTIL, wh=wh, site=site, config=cfg)
    assert again.code == 0, again.output  # reloading (delete + insert + upsert) needs no more

    engine = create_engine(make_url(wh.url).set(drivername="postgresql+psycopg"))
    try:
        for forbidden in (
            f'CREATE TABLE "{wh.schema}".intruder (x int)',
            f'TRUNCATE "{wh.schema}".conversations',
            f'DROP TABLE "{wh.schema}".etl_runs',
            "CREATE TABLE public.intruder (x int)",
            f'UPDATE "{wh.schema}".conversations SET reference = NULL',
        ):
            with engine.connect() as conn, pytest.raises(ProgrammingError, match=r"denied|owner"):
                conn.execute(text(forbidden))
    finally:
        engine.dispose()
    assert role in wh.url


def test_the_schema_owner_of_the_readme_migrates_its_schema(
    pg_server: str, pg_warehouse: TestWarehouse, tmp_path: Path
) -> None:
    """The README's owner has its schema and nothing on the database: no CREATE, which
    `CREATE SCHEMA IF NOT EXISTS` asks for even when the schema exists."""
    role, schema = f"etl_owner_{secrets.token_hex(4)}", f"owned_{secrets.token_hex(4)}"
    _admin(pg_server, f"CREATE ROLE {role} LOGIN PASSWORD '{h.DB_PASSWORD}'")
    _admin(pg_server, f'CREATE SCHEMA "{schema}" AUTHORIZATION {role}')
    try:
        url = make_url(pg_warehouse.url).set(username=role, password=h.DB_PASSWORD)
        owner = TestWarehouse("postgres", url.render_as_string(False), schema)
        result = h.run("migrate", wh=owner, config=h.config(tmp_path))
        assert result.code == 0, result.output
    finally:
        _admin(pg_server, f'DROP SCHEMA "{schema}" CASCADE; DROP OWNED BY {role}; DROP ROLE {role}')


def test_eraser_role_with_only_the_documented_grants_forgets_and_cannot_load(
    pg_server: str,
    loader: tuple[TestWarehouse, str],
    make_sim: Any,
    tmp_path: Path,
) -> None:
    """The README's separate role for erasure: `etl forget` works with its grants alone, a
    load does not."""
    wh, _ = loader
    site, cfg = h.Site(make_sim), h.config(tmp_path)
    site.serve()
    assert h.run("run", "--until", h.UNTIL, wh=wh, site=site, config=cfg).code == 0
    role = f"etl_eraser_{secrets.token_hex(4)}"
    _admin(pg_server, f"CREATE ROLE {role} LOGIN PASSWORD '{h.DB_PASSWORD}'")
    try:
        _admin(pg_server, ERASER_GRANTS(f'"{wh.schema}"', role))
        url = make_url(wh.url).set(username=role, password=h.DB_PASSWORD)
        eraser = TestWarehouse("postgres", url.render_as_string(False), wh.schema)
        (victim,) = h.query(wh, f"SELECT min(id) FROM {wh.table('conversations')}")[0]

        forgot = h.run("forget", f"--conversation-id={victim}", wh=eraser, config=cfg)

        assert forgot.code == 0, forgot.output
        assert h.query(wh, f"SELECT id FROM {wh.table('conversations')} WHERE id = {victim}") == []
        again = h.run(
            "backfill", "--from", h.START, "--to", h.UNTIL, wh=eraser, site=site, config=cfg
        )
        assert again.code == 7 and "permission denied" in again.output, again.output
    finally:
        _admin(pg_server, f"DROP OWNED BY {role}; DROP ROLE {role}")


def test_a_missing_grant_is_a_clear_database_error(
    pg_server: str, loader: tuple[TestWarehouse, str], make_sim: Any, tmp_path: Path
) -> None:
    wh, role = loader
    site, cfg = h.Site(make_sim), h.config(tmp_path)
    site.serve()
    h.preload(h.TestWarehouse("postgres", wh.url, wh.schema), site, cfg)  # inserts the state row
    _admin(pg_server, f'REVOKE UPDATE ON "{wh.schema}".etl_state FROM {role}')
    before = h.snapshot(wh)

    result = h.run("run", "--until", h.UNTIL, wh=wh, site=site, config=cfg)

    assert result.code == 7, result.output  # ExitCode.DATABASE
    message = h.error_of(result)
    assert "permission denied for table etl_state" in message, message
    assert "refused this role" in message and "Least privilege" in message, message
    assert f"window {h.W2}" in message and "rolled back" in message
    assert "Traceback" not in result.output
    h.assert_same(h.snapshot(wh), before)


# -- SQL is never built by formatting values into strings -----------------------------------------

_SQL_CALLS = {"text", "exec_driver_sql", "execute", "executemany", "SQL", "copy", "Composed"}


def _formatted(node: ast.expr) -> str | None:
    """How `node` builds a string at run time, if it does."""
    if isinstance(node, ast.JoinedStr):
        return "an f-string"
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod | ast.Add):
        return "% or + on strings"
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "format"
        and isinstance(node.func.value, ast.Constant | ast.JoinedStr)
    ):
        return "str.format"
    return None


def sql_built_from_strings(root: Path) -> list[str]:
    found: list[tuple[str, int, str]] = []
    for path in sorted(root.rglob("*.py")):
        if "fakeapi" in path.parts:
            continue  # the simulator runs no SQL
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            how = _formatted(node.args[0]) if name in _SQL_CALLS else None
            if how:
                found.append((str(path), node.lineno, f"{name}() of {how}"))
    return [f"{path}:{line}: {what}" for path, line, what in sorted(found)]


def test_product_sql_uses_bound_parameters_or_constructs_only() -> None:
    etl_package = Path(__file__).parents[2] / "etl"
    assert sql_built_from_strings(etl_package) == []


def test_the_sql_check_would_catch_string_formatting(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text(
        "def f(conn, name, text, sql):\n"
        "    conn.execute(text(f\"SELECT * FROM t WHERE name = '{name}'\"))\n"
        "    conn.exec_driver_sql('DELETE FROM t WHERE id = %s' % name)\n"
        "    sql.SQL('SELECT {}'.format(name))\n"
        "    conn.execute(text('SELECT * FROM t WHERE name = :n'), {'n': name})\n"
    )
    found = sql_built_from_strings(tmp_path)
    assert [line.split(": ", 1)[1] for line in found] == [
        "text() of an f-string",
        "exec_driver_sql() of % or + on strings",
        "SQL() of str.format",
    ]
