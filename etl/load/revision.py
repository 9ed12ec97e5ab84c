"""The schema revision this code needs and the one a warehouse is at, without importing Alembic."""

from __future__ import annotations

from typing import Final

from sqlalchemy import Column, Engine, MetaData, String, Table, inspect, select

from etl.errors import ConfigError

# The newest revision in migrations/versions (a test checks it against Alembic's own view).
# A constant, because importing Alembic to ask costs every run a few tenths of a second.
HEAD_REVISION: Final = "0010"


def current_revision(engine: Engine, schema: str | None = None) -> str | None:
    """The revision the warehouse is at, None when it was never migrated.

    Several rows (two heads, which this project never creates) read as one joined string,
    so that the caller's "not at head" message shows them.
    """
    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version", schema=schema):
            return None
        version = Table(
            "alembic_version", MetaData(schema=schema), Column("version_num", String(32))
        )
        revisions = sorted(connection.execute(select(version.c.version_num)).scalars())
    return ",".join(revisions) or None


def refuse_other_revision(current: str | None, warehouse: str) -> None:
    """Raise ConfigError when the warehouse is not at the revision this version reads."""
    if current != HEAD_REVISION:
        raise ConfigError(
            f"the warehouse {warehouse} is at schema revision {current or 'none'}, this version "
            f"needs {HEAD_REVISION}: run `etl migrate` first"
        )
