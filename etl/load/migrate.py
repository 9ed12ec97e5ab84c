"""Programmatic Alembic: upgrade/downgrade the warehouse, print the DDL, find the head."""

from __future__ import annotations

import io
from datetime import tzinfo
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from etl.load.localtime import relocalize
from etl.load.schema import build_metadata

# The repository's migrations/ directory; fine for an editable install (the project's mode).
MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def _config(
    *, url: str | URL | None = None, schema: str | None = None, buffer: io.StringIO | None = None
) -> Config:
    # No ini file: the application owns logging, and nothing depends on the current directory.
    config = Config(output_buffer=buffer)
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        rendered = url.render_as_string(hide_password=False) if isinstance(url, URL) else url
        config.set_main_option(
            "sqlalchemy.url", rendered.replace("%", "%%")
        )  # ConfigParser interpolates %
    config.attributes["schema"] = schema
    config.attributes["configure_logging"] = False
    return config


def _run(
    engine_or_url: Engine | str | URL,
    schema: str | None,
    action: str,
    revision: str,
    reporting_zone: tzinfo | None = None,
) -> int | None:
    engine = (
        engine_or_url
        if isinstance(engine_or_url, Engine)
        else create_engine(engine_or_url, poolclass=NullPool)
    )
    try:
        with engine.begin() as connection:
            config = _config(schema=schema)
            config.attributes["connection"] = connection
            if action != "upgrade":
                command.downgrade(config, revision)
                return None
            command.upgrade(config, revision)
            if reporting_zone is None:
                return None
            return relocalize(connection, build_metadata(schema), reporting_zone)
    finally:
        if engine is not engine_or_url:
            engine.dispose()


def upgrade(
    engine_or_url: Engine | str | URL,
    schema: str | None = None,
    revision: str = "head",
    *,
    reporting_zone: tzinfo | None = None,
) -> int | None:
    """Migrate the warehouse up to `revision` in one transaction (DDL is transactional).

    With `reporting_zone` (to the head revision only), the same transaction then records it
    and recomputes the stored local dates when the warehouse had another: the number of
    conversations recomputed, None when there was nothing to do (etl.load.localtime).
    """
    return _run(engine_or_url, schema, "upgrade", revision, reporting_zone)


def downgrade(
    engine_or_url: Engine | str | URL, schema: str | None = None, revision: str = "base"
) -> None:
    """Migrate the warehouse down to `revision`; "base" drops every table."""
    _run(engine_or_url, schema, "downgrade", revision)


def upgrade_sql(url: str | URL, schema: str | None = None) -> str:
    """The DDL `upgrade` would run on a database of `url`'s kind (Alembic offline mode); no I/O."""
    buffer = io.StringIO()
    command.upgrade(_config(url=url, schema=schema, buffer=buffer), "head", sql=True)
    return buffer.getvalue()


def head_revision() -> str:
    """The newest revision this version of the code ships."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no migration found in {MIGRATIONS_DIR}")
    return head
