"""The schema is created only by migrations: they must build exactly what schema.py describes."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine, inspect, text
from sqlalchemy.pool import NullPool

from etl.load.migrate import downgrade, head_revision, upgrade, upgrade_sql
from etl.load.revision import HEAD_REVISION, current_revision
from etl.load.schema import build_metadata
from tests.conftest import SEED_EXPORT, TestWarehouse
from tests.pipeline.cli_helpers import etl

ALL_TABLES = set(build_metadata().tables)


def _diff(engine: Engine, schema: str | None) -> list[Any]:
    metadata = build_metadata(schema)
    with engine.connect() as conn:

        def include_name(name: str | None, type_: str, _parents: object) -> bool:
            return type_ != "schema" or name == schema

        context = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                "include_schemas": schema is not None,
                "include_name": include_name,
                "version_table_schema": schema,
            },
        )
        return list(compare_metadata(context, metadata))


def _tables(engine: Engine, schema: str | None) -> set[str]:
    return set(inspect(engine).get_table_names(schema=schema))


def _round_trip(engine: Engine, schema: str | None) -> None:
    assert current_revision(engine, schema) is None
    upgrade(engine, schema)
    assert current_revision(engine, schema) == head_revision()
    assert _tables(engine, schema) == ALL_TABLES | {"alembic_version"}
    assert _diff(engine, schema) == []
    upgrade(engine, schema)  # idempotent: already at head
    downgrade(engine, schema)
    assert _tables(engine, schema) <= {"alembic_version"}
    assert current_revision(engine, schema) is None


def test_sqlite_upgrade_matches_metadata_and_downgrades(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'w.db'}", poolclass=NullPool)
    try:
        _round_trip(engine, None)
    finally:
        engine.dispose()


def test_sqlite_upgrade_by_url_from_another_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # migrations are found relative to the package, not the cwd
    url = f"sqlite:///{tmp_path / 'w.db'}"
    upgrade(url)
    engine = create_engine(url, poolclass=NullPool)
    try:
        assert current_revision(engine) == head_revision()
        assert _tables(engine, None) == ALL_TABLES | {"alembic_version"}
    finally:
        engine.dispose()


def test_sqlite_timestamps_read_back_aware_utc_and_sort(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta, timezone

    url = f"sqlite:///{tmp_path / 'w.db'}"
    upgrade(url)
    metadata = build_metadata()
    intents = metadata.tables["intents"]
    engine = create_engine(url, poolclass=NullPool)
    plus_two = timezone(timedelta(hours=2))
    try:
        with engine.begin() as conn:
            conn.execute(
                intents.insert(),
                [
                    {"id": 1, "last_seen_at": datetime(2021, 1, 1, 1, 0, tzinfo=plus_two)},
                    {"id": 2, "last_seen_at": datetime(2020, 12, 31, 23, 30, tzinfo=UTC)},
                ],
            )
            rows = conn.execute(intents.select().order_by(intents.c.last_seen_at)).all()
        assert [r.id for r in rows] == [1, 2]  # 23:00 UTC before 23:30 UTC
        assert rows[0].last_seen_at == datetime(2020, 12, 31, 23, 0, tzinfo=UTC)
        assert rows[0].last_seen_at.tzinfo is UTC
    finally:
        engine.dispose()


def test_upgrade_sql_is_offline_ddl() -> None:
    sqlite_ddl = upgrade_sql("sqlite:///nowhere-never-created.db")
    assert "CREATE TABLE conversations" in sqlite_ddl
    assert not Path("nowhere-never-created.db").exists()
    pg_ddl = upgrade_sql("postgresql+psycopg://u@h.invalid/db", schema="bi")
    assert 'CREATE SCHEMA IF NOT EXISTS "bi"' in pg_ddl
    assert "CREATE TABLE bi.conversations" in pg_ddl
    assert "JSONB" in pg_ddl and "TIMESTAMP WITH TIME ZONE" in pg_ddl
    assert "COMMENT ON COLUMN bi.conversations.id" in pg_ddl
    # 0002: the new indexes are built before the old ones go, then take their names.
    revision_2 = pg_ddl[pg_ddl.index("0001 -> 0002") :]
    assert revision_2.index("CREATE INDEX ix_messages_time_new") < revision_2.index(
        "DROP INDEX bi.ix_messages_time;"
    )
    assert "ALTER INDEX bi.ix_messages_time_new RENAME TO ix_messages_time" in revision_2
    assert "USING brin (time) WITH (autosummarize = on)" in revision_2
    sqlite_revision_2 = sqlite_ddl[sqlite_ddl.index("0001 -> 0002") :]
    assert "brin" not in sqlite_revision_2
    assert "WHERE predicted_intent_id IS NOT NULL" in sqlite_revision_2


# --- PostgreSQL: each test has its own throwaway schema ------------------------------------


@pytest.fixture
def _pg_schema(pg_server: str) -> Any:
    """(engine, schema): a random schema that only this test uses, dropped afterwards.

    The migration itself must create the schema, so it does not exist when the test starts.
    """
    from sqlalchemy.engine import make_url

    schema = f"t_mig_{secrets.token_hex(5)}"
    engine = create_engine(
        make_url(pg_server).set(drivername="postgresql+psycopg"), poolclass=NullPool
    )
    try:
        yield engine, schema
    finally:
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()


@pytest.mark.postgres
def test_postgres_upgrade_matches_metadata_and_downgrades(_pg_schema: tuple[Engine, str]) -> None:
    engine, schema = _pg_schema
    _round_trip(engine, schema)
    with engine.connect() as conn:
        exists = conn.execute(
            text("SELECT count(*) FROM pg_namespace WHERE nspname = :s"), {"s": schema}
        ).scalar()
    assert exists == 1  # the migration created the schema it was pointed at


@pytest.mark.postgres
def test_postgres_comments_and_types(_pg_schema: tuple[Engine, str]) -> None:
    engine, schema = _pg_schema
    upgrade(engine, schema)
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT table_name, column_name, data_type, col_description("
                "(quote_ident(table_schema) || '.' || quote_ident(table_name))::regclass, "
                "ordinal_position) FROM information_schema.columns WHERE table_schema = :s"
            ),
            {"s": schema},
        ).all()
    types = {(t, c): d for t, c, d, _ in rows}
    assert types[("conversations", "created_at")] == "timestamp with time zone"
    assert types[("messages", "labels")] == "jsonb"
    assert types[("messages", "id")] == "bigint"
    missing = [(t, c) for t, c, _, comment in rows if t != "alembic_version" and not comment]
    assert missing == []


def test_the_head_constant_is_alembics_head() -> None:
    # The run-time check reads HEAD_REVISION instead of importing Alembic: a new migration
    # must bump it, or every load would refuse a freshly migrated warehouse.
    assert HEAD_REVISION == head_revision()


def test_a_warehouse_at_another_revision_reads_as_that_revision(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'w.db'}", poolclass=NullPool)
    try:
        upgrade(engine)
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = 'older'"))
        assert current_revision(engine) == "older"
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM alembic_version"))
        assert current_revision(engine) is None
    finally:
        engine.dispose()


# --- the dashboard indexes (revision 0002) --------------------------------------------------


def _pg_index_definitions(engine: Engine, schema: str) -> dict[str, str]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = :s"), {"s": schema}
        ).all()
    return {name: definition.replace(f"{schema}.", "") for name, definition in rows}


def _pg_plan(engine: Engine, schema: str, query: str) -> str:
    with engine.begin() as conn:
        conn.execute(text(f'SET LOCAL search_path = "{schema}"'))
        conn.execute(text("SET LOCAL enable_seqscan = off"))
        return "\n".join(conn.execute(text(f"EXPLAIN {query}")).scalars())


@pytest.mark.postgres
def test_postgres_indexes_are_the_ones_schema_py_declares(_pg_schema: tuple[Engine, str]) -> None:
    engine, schema = _pg_schema
    upgrade(engine, schema)
    declared = f"{schema}_declared"
    try:
        with engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{declared}"'))
            build_metadata(declared).create_all(conn)
        migrated = _pg_index_definitions(engine, schema)
        migrated.pop("alembic_version_pkc")
        assert migrated == _pg_index_definitions(engine, declared)
    finally:
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{declared}" CASCADE'))
    assert "USING brin (\"time\") WITH (autosummarize='on')" in migrated["ix_messages_time"]
    assert 'USING brin ("time")' in migrated["ix_content_time"]
    assert migrated["ix_messages_predicted_intent_id"].endswith(
        "WHERE (predicted_intent_id IS NOT NULL)"
    )
    assert "USING btree (last_message_at)" in migrated["ix_conversations_last_message_at"]
    assert migrated["ix_conversations_authentication_identifier"].endswith(
        "USING hash (authentication_identifier) WHERE (authentication_identifier IS NOT NULL)"
    )


@pytest.mark.postgres
def test_postgres_dashboard_filters_can_use_the_indexes(_pg_schema: tuple[Engine, str]) -> None:
    engine, schema = _pg_schema
    upgrade(engine, schema)
    plans = {
        "ix_messages_time": "SELECT id FROM messages WHERE time >= '2024-01-01' "
        "AND time < '2024-02-01'",
        "ix_content_time": "SELECT message_id FROM content WHERE time >= '2024-01-01'",
        "ix_messages_predicted_intent_id": "SELECT id FROM messages WHERE predicted_intent_id = 7",
        "ix_messages_displayed_action_id": "SELECT id FROM messages "
        "WHERE displayed_action_id = ANY(ARRAY[1, 2]::bigint[])",
    }
    for index, query in plans.items():
        assert index in _pg_plan(engine, schema, query), query


@pytest.mark.postgres
def test_postgres_upgrade_from_0001_keeps_rows_and_replaces_indexes(
    _pg_schema: tuple[Engine, str],
) -> None:
    engine, schema = _pg_schema
    upgrade(engine, schema, revision="0001")
    assert "USING btree" in _pg_index_definitions(engine, schema)["ix_messages_time"]
    with engine.begin() as conn:
        conn.execute(
            text(
                f'INSERT INTO "{schema}".messages (id, conversation_id, position, time, '
                "predicted_intent_id) VALUES (1, 10, 0, '2024-01-05T10:00:00Z', 7), "
                "(2, 10, 1, '2024-01-05T10:00:01Z', NULL)"
            )
        )
    upgrade(engine, schema)
    definitions = _pg_index_definitions(engine, schema)
    assert "USING brin" in definitions["ix_messages_time"]
    assert (
        "WHERE (displayed_action_id IS NOT NULL)" in definitions["ix_messages_displayed_action_id"]
    )
    found = _pg_plan(engine, schema, "SELECT id FROM messages WHERE predicted_intent_id = 7")
    assert "ix_messages_predicted_intent_id" in found
    with engine.begin() as conn:
        conn.execute(text(f'SET LOCAL search_path = "{schema}"'))
        conn.execute(text("SET LOCAL enable_seqscan = off"))
        ids = conn.execute(text("SELECT id FROM messages WHERE predicted_intent_id = 7")).all()
    assert ids == [(1,)]
    downgrade(engine, schema, revision="0001")
    assert _pg_index_definitions(engine, schema)["ix_messages_time"].endswith(
        'USING btree ("time")'
    )


def _sqlite_index_sql(engine: Engine, name: str) -> str:
    with engine.connect() as conn:
        sql: str = conn.execute(
            text("SELECT sql FROM sqlite_master WHERE type = 'index' AND name = :n"), {"n": name}
        ).scalar_one()
    return sql


def test_sqlite_0002_downgrades_and_upgrades_again(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'w.db'}", poolclass=NullPool)
    try:
        upgrade(engine)
        downgrade(engine, revision="0001")
        assert current_revision(engine) == "0001"
        assert "WHERE" not in _sqlite_index_sql(engine, "ix_messages_predicted_intent_id")
        upgrade(engine)
        assert _sqlite_index_sql(engine, "ix_messages_displayed_action_id").endswith(
            "WHERE displayed_action_id IS NOT NULL"
        )
        assert _diff(engine, None) == []
    finally:
        engine.dispose()


def test_sqlite_id_lookups_use_the_partial_indexes(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'w.db'}", poolclass=NullPool)
    try:
        upgrade(engine)
        with engine.connect() as conn:
            for column in ("predicted_intent_id", "displayed_action_id"):
                plan = " ".join(
                    str(row[-1])
                    for row in conn.execute(
                        text(f"EXPLAIN QUERY PLAN SELECT id FROM messages WHERE {column} = 3")
                    )
                )
                assert f"ix_messages_{column}" in plan
            sql = conn.execute(
                text("SELECT sql FROM sqlite_master WHERE name = 'ix_messages_predicted_intent_id'")
            ).scalar_one()
        assert sql.endswith("WHERE predicted_intent_id IS NOT NULL")
    finally:
        engine.dispose()


def test_sqlite_0003_keeps_json_values_and_stores_json_as_text(tmp_path: Path) -> None:
    """SQLite gives a column declared JSON NUMERIC affinity, which turns a JSON value that is
    one number into an SQLite number (1.0 -> 1, 2**64 + 1 -> a rounded float); 0003 declares
    those columns TEXT and keeps what they held."""
    engine = create_engine(f"sqlite:///{tmp_path / 'w.db'}", poolclass=NullPool)
    insert = text(
        "INSERT INTO conversations (id, user_information, extra, content_hash, loaded_at, "
        "load_run_id) VALUES (:id, :info, :extra, 'h', '2024-01-01 00:00:00.000000', 'r')"
    )
    try:
        upgrade(engine, revision="0002")
        with engine.begin() as conn:
            conn.execute(insert, {"id": 1, "info": '{"name": "Zoë"}', "extra": None})
            conn.execute(insert, {"id": 2, "info": "1.0", "extra": '{"_value": [1, 2]}'})
            conn.execute(
                insert, {"id": 4, "info": "0.30000000000000004", "extra": "3.141592653589793"}
            )
            conn.execute(
                text(
                    "INSERT INTO intents (id, title, inherit_skill, last_seen_at) "
                    "VALUES (5, 'Hours', NULL, '2024-06-01 00:00:00.000000')"
                )
            )
            assert conn.execute(text("SELECT typeof(user_information) FROM conversations "
                                     "WHERE id = 2")).scalar_one() == "integer"  # fmt: skip
        upgrade(engine)
        with engine.begin() as conn:
            declared = {
                row[1]: row[2] for row in conn.execute(text("PRAGMA table_info(conversations)"))
            }
            assert declared["user_information"] == declared["extra"] == "TEXT"
            values = conn.execute(
                text("SELECT id, user_information, extra FROM conversations ORDER BY id")
            ).all()
            assert values[:2] == [(1, '{"name": "Zoë"}', None), (2, "1", '{"_value": [1, 2]}')]
            # A float the old affinity stored as REAL reads back as the same double.
            (_, info, extra) = values[2]
            assert json.loads(info) == 0.30000000000000004
            assert json.loads(extra) == 3.141592653589793
            # Dimension rows from before 0003: each value was seen at their last_seen_at.
            seen = conn.execute(
                text("SELECT title_seen_at, inherit_skill_seen_at FROM intents WHERE id = 5")
            ).one()
            assert tuple(seen) == ("2024-06-01 00:00:00.000000", None)
            conn.execute(insert, {"id": 3, "info": "18446744073709551617", "extra": "1.0"})
            kept = conn.execute(
                text("SELECT user_information, extra FROM conversations WHERE id = 3")
            ).one()
            assert tuple(kept) == ("18446744073709551617", "1.0")  # the JSON text, as written
        assert _diff(engine, None) == []
        downgrade(engine, revision="0002")
        assert current_revision(engine) == "0002"
        upgrade(engine)
        assert _diff(engine, None) == []
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_postgres_0007_leaves_the_views_and_their_grants_alone(
    _pg_schema: tuple[Engine, str],
) -> None:
    """0007 changes only SQLite's durations: on PostgreSQL dropping and creating the same
    views again would take the grants a role has on the views alone, and fail on a view of
    the user's own that reads them."""
    engine, schema = _pg_schema
    upgrade(engine, schema, "0006")
    role = f"dash_{secrets.token_hex(4)}"
    with engine.begin() as conn:
        conn.execute(text(f"CREATE ROLE {role}"))
        conn.execute(text(f'GRANT SELECT ON "{schema}".daily_metrics TO {role}'))
        conn.execute(text(f'CREATE VIEW "{schema}".mine AS SELECT * FROM "{schema}".daily_metrics'))
    try:
        upgrade(engine, schema)
        assert current_revision(engine, schema) == HEAD_REVISION
        with engine.connect() as conn:
            granted = conn.execute(
                text("SELECT has_table_privilege(:r, :v, 'SELECT')"),
                {"r": role, "v": f'"{schema}".daily_metrics'},
            ).scalar()
        assert granted
    finally:
        with engine.begin() as conn:
            conn.execute(text(f'DROP VIEW "{schema}".mine'))
            conn.execute(text(f'REVOKE ALL ON "{schema}".daily_metrics FROM {role}'))
            conn.execute(text(f"DROP ROLE {role}"))


@pytest.mark.postgres
def test_a_view_of_the_users_own_that_stops_a_migration_is_named(
    pg_server: str, _pg_schema: tuple[Engine, str], tmp_path: Path
) -> None:
    """0006 recreates the metric views: a view reading them stops it. The message names the
    view and says what to do, and nothing is changed."""
    from tests.conftest import TestWarehouse
    from tests.pipeline.cli_helpers import etl

    engine, schema = _pg_schema
    upgrade(engine, schema, "0005")
    with engine.begin() as conn:
        conn.execute(text(f'CREATE VIEW "{schema}".mine AS SELECT * FROM "{schema}".daily_metrics'))
    wh = TestWarehouse("postgres", pg_server, schema)
    result = etl("migrate", wh=wh)
    assert result.code == 7, result.output
    assert "an object of yours depends on them" in result.stderr
    assert "mine" in result.stderr and "drop it, run `etl migrate`" in result.stderr
    assert current_revision(engine, schema) == "0005"
    with engine.begin() as conn:
        conn.execute(text(f'DROP VIEW "{schema}".mine'))


def test_a_warehouse_a_later_version_migrated_is_refused_with_what_to_do(
    migrated: TestWarehouse,
) -> None:
    """Not "run `etl migrate`": this version's migrate does not know the revision either."""
    engine = migrated.engine()
    try:
        with engine.begin() as conn:
            conn.execute(
                text(f"UPDATE {migrated.table('alembic_version')} SET version_num = '9999'")
            )
    finally:
        engine.dispose()
    for command in (["status"], ["migrate"], ["load-file", str(SEED_EXPORT)]):
        result = etl(*command, wh=migrated)
        assert result.code == (0 if command == ["status"] else 2), (command, result.output)
        assert "revision 9999, which a later version of convo-etl made" in result.output, command
        assert "bug" not in result.output and "run `etl migrate`" not in result.output, command
