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


def _newer(current: str | None) -> bool:
    """Whether a later version of convo-etl made revision `current` (rolled back code, or a
    second host not upgraded yet): this version's `etl migrate` does not know it either."""
    return (
        current is not None
        and current.isdigit()
        and len(current) == len(HEAD_REVISION)
        and current > HEAD_REVISION
    )


def revision_advice(current: str | None) -> str | None:
    """What to do about a warehouse at revision `current` (None: never migrated), as the end
    of a sentence after "at schema revision ..."; None when it is the one this version reads."""
    if current == HEAD_REVISION:
        return None
    if _newer(current):
        return (
            f"which a later version of convo-etl made; this version knows revisions up to "
            f"{HEAD_REVISION}: run the version that migrated it (upgrade convo-etl here)"
        )
    return f"this version needs {HEAD_REVISION}: run `etl migrate` first"


def refuse_newer_revision(current: str | None, warehouse: str) -> None:
    """Raise ConfigError when a later version of convo-etl migrated the warehouse."""
    if _newer(current):
        raise ConfigError(
            f"the warehouse {warehouse} is at schema revision {current}, {revision_advice(current)}"
        )


def refuse_other_revision(current: str | None, warehouse: str) -> None:
    """Raise ConfigError when the warehouse is not at the revision this version reads."""
    advice = revision_advice(current)
    if advice is not None:
        raise ConfigError(
            f"the warehouse {warehouse} is at schema revision {current or 'none'}, {advice}"
        )
