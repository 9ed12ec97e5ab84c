"""Alembic environment: target database, optional PostgreSQL schema, online and offline modes."""

from __future__ import annotations

import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from etl.load.schema import build_metadata

DEFAULT_URL = "sqlite:///warehouse.db"

config = context.config

# Programmatic callers (etl/load/migrate.py) own logging; only `alembic` on the command line
# should configure it from the ini file.
if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _url() -> str:
    return (
        config.get_main_option("sqlalchemy.url")
        or os.environ.get("ETL_DATABASE_URL")
        or DEFAULT_URL
    )


def _schema(dialect_name: str) -> str | None:
    schema = config.attributes.get("schema") or context.get_x_argument(as_dictionary=True).get(
        "schema"
    )
    if schema and dialect_name != "postgresql":
        raise ValueError(
            f"a schema ({schema!r}) is only supported on PostgreSQL, not {dialect_name}"
        )
    # The migration scripts read the resolved schema from here.
    config.attributes["schema"] = schema or None
    return schema or None


def _quoted(schema: str) -> str:
    return '"' + schema.replace('"', '""') + '"'


def _configure(schema: str | None, dialect_name: str, **kw: object) -> None:
    def include_name(name: str | None, type_: str, _parents: object) -> bool:
        # Autogenerate looks at our schema only, never at the rest of a shared database.
        return type_ != "schema" or name == schema

    context.configure(
        target_metadata=build_metadata(schema),
        version_table_schema=schema,
        include_schemas=schema is not None,
        include_name=include_name,
        # SQLite cannot ALTER most things; batch mode rebuilds tables for later revisions.
        render_as_batch=dialect_name == "sqlite",
        compare_type=True,
        **kw,  # type: ignore[arg-type]
    )


def run_offline() -> None:
    url = make_url(_url())
    dialect_name = url.get_backend_name()
    schema = _schema(dialect_name)
    _configure(
        schema, dialect_name, url=url, literal_binds=True, dialect_opts={"paramstyle": "named"}
    )
    with context.begin_transaction():
        if schema:
            context.execute(f"CREATE SCHEMA IF NOT EXISTS {_quoted(schema)}")
        context.run_migrations()


def _run_on(connection: Connection) -> None:
    dialect_name = connection.dialect.name
    schema = _schema(dialect_name)
    # PostgreSQL checks the CREATE privilege on the database before IF NOT EXISTS: a schema
    # owner without it (the README's least-privilege set-up) could not migrate its own schema.
    exists = text("SELECT 1 FROM pg_namespace WHERE nspname = :schema")
    if schema and connection.execute(exists, {"schema": schema}).first() is None:
        connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {_quoted(schema)}"))
    _configure(schema, dialect_name, connection=connection)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_on(connection)
        return
    engine = create_engine(_url(), poolclass=NullPool)
    try:
        with engine.begin() as conn:
            _run_on(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
