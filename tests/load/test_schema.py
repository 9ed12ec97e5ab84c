"""The warehouse metadata: contract with the normalizer, keys, indexes, types, storability."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import JSON, DateTime, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import StatementError

from etl.load.loader import LOAD_COLUMNS, WRITTEN_COLUMNS
from etl.load.schema import UTCDateTime, build_metadata
from etl.normalize import TABLE_COLUMNS, normalize_conversation

EXPORT = Path(__file__).parents[1] / "fixtures" / "seed-example-export.json"
PIPELINE_TABLES = (
    "etl_state",
    "etl_runs",
    "etl_rejects",
    "etl_windows",
    "etl_settings",
    "etl_tombstones",
    "etl_erased_keys",
)
metadata = build_metadata()


def test_tables_follow_the_normalizer_contract() -> None:
    assert set(metadata.tables) == {*TABLE_COLUMNS, *PIPELINE_TABLES}
    for name, columns in TABLE_COLUMNS.items():
        assert tuple(metadata.tables[name].c.keys())[: len(columns)] == columns, name
    # Every table holds exactly what the loader writes: the normalizer's columns, then the
    # loader's own (LOAD_COLUMNS for conversations, SEEN_COLUMNS for the dimensions).
    assert tuple(metadata.tables["conversations"].c.keys()) == (
        *TABLE_COLUMNS["conversations"],
        *LOAD_COLUMNS,
    )
    for name in TABLE_COLUMNS:
        assert tuple(metadata.tables[name].c.keys()) == WRITTEN_COLUMNS[name], name


def test_keys() -> None:
    pk = {
        name: tuple(c.name for c in metadata.tables[name].primary_key) for name in metadata.tables
    }
    assert pk == {
        "conversations": ("id",),
        "messages": ("id",),
        "content": ("message_id", "position"),
        "buttons": ("message_id", "content_position", "position"),
        "intent_analysis": ("message_id", "position"),
        "intents": ("id",),
        "actions": ("id",),
        "etl_state": ("state_key",),
        "etl_runs": ("id",),
        "etl_rejects": ("id",),
        "etl_windows": ("state_key", "window_start", "window_end"),
        "etl_settings": ("key",),
        "etl_tombstones": ("conversation_id",),
        "etl_erased_keys": ("kind", "digest"),
    }
    for table in metadata.tables.values():
        assert table.primary_key.name == f"pk_{table.name}"
        assert not table.foreign_keys  # child rows are replaced in bulk (see schema.py)


def test_dashboard_indexes() -> None:
    indexed = {
        (table.name, tuple(c.name for c in index.columns))
        for table in metadata.tables.values()
        for index in table.indexes
    }
    required = {
        ("conversations", ("created_at",)),
        ("conversations", ("last_message_at",)),
        ("messages", ("time",)),
        ("content", ("time",)),
        ("messages", ("predicted_intent_id",)),
        ("messages", ("displayed_action_id",)),
        ("etl_runs", ("state_key", "window_end")),
        ("etl_runs", ("started_at",)),
    } | {
        (name, ("conversation_id",))
        for name in ("messages", "content", "buttons", "intent_analysis")
    }
    assert required <= indexed
    for table in metadata.tables.values():
        for index in table.indexes:
            assert index.name == f"ix_{table.name}_{'_'.join(c.name for c in index.columns)}"


def test_types_and_comments() -> None:
    for table in metadata.tables.values():
        assert table.comment
        for column in table.c:
            assert column.comment, f"{table.name}.{column.name}"
            if isinstance(column.type, DateTime):
                pytest.fail(f"{table.name}.{column.name}: use UTCDateTime")
    json_columns = {
        (t.name, c.name) for t in metadata.tables.values() for c in t.c if isinstance(c.type, JSON)
    }
    assert ("messages", "human_agent") in json_columns and ("etl_runs", "rows") in json_columns
    extra = metadata.tables["messages"].c.extra
    assert extra.type.compile(dialect=postgresql.dialect()) == "JSONB"
    assert extra.type.compile(dialect=sqlite.dialect()) == "TEXT"  # TEXT affinity: see 0003
    created = metadata.tables["conversations"].c.created_at
    assert isinstance(created.type, UTCDateTime)
    assert created.type.compile(dialect=postgresql.dialect()) == "TIMESTAMP WITH TIME ZONE"


def test_schema_qualified_metadata() -> None:
    md = build_metadata("analytics")
    assert "analytics.conversations" in md.tables
    assert md.tables["analytics.etl_runs"].schema == "analytics"


def test_utc_datetime_conversions() -> None:
    utc = UTCDateTime()
    pg, lite = postgresql.dialect(), sqlite.dialect()
    local = datetime(2021, 1, 28, 17, 20, 48, 812727, tzinfo=timezone(timedelta(hours=1)))
    assert utc.process_bind_param(local, lite) == datetime(2021, 1, 28, 16, 20, 48, 812727)
    assert utc.process_bind_param(local, pg) == local
    assert utc.process_bind_param(local, pg).tzinfo is UTC  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="naive"):
        utc.process_bind_param(datetime(2021, 1, 1), lite)
    assert utc.process_result_value(datetime(2021, 1, 1), lite) == datetime(2021, 1, 1, tzinfo=UTC)
    assert utc.process_result_value(local, pg).tzinfo is UTC  # type: ignore[union-attr]


def _insertable(name: str, rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    dicts = [dict(zip(TABLE_COLUMNS[name], row, strict=True)) for row in rows]
    if name == "conversations":
        now = datetime.now(UTC)
        for d in dicts:
            d.update(content_hash="h", exported_at=now, loaded_at=now, load_run_id="r")
    if name in ("intents", "actions"):  # one row per id, as the loader keeps
        dicts = list({d["id"]: d for d in dicts}.values())
    return dicts


def test_normalized_rows_round_trip(migrated: Any) -> None:
    """What the normalizer produces, even from hostile strings, is stored and read back as is."""
    conv = json.loads(EXPORT.read_text())[1]
    conv["reference"] = "nul\x00here"
    conv["user_information"] = {"k\ud800": ["\x00", 1.5, True, None]}
    conv["messages"][0]["human_agent"] = {"name": "Ann", "id": 3}
    conv["messages"][1]["question"]["input"] = "lone \udfff surrogate"
    nc = normalize_conversation(conv, keep_raw=False)
    md = build_metadata(migrated.schema)
    engine = migrated.engine()
    try:
        with engine.begin() as conn:
            for name, rows in nc.rows.items():
                table = md.tables[f"{migrated.schema}.{name}" if migrated.schema else name]
                if rows:
                    conn.execute(table.insert(), _insertable(name, rows))
        with engine.connect() as conn:
            for name, rows in nc.rows.items():
                table = md.tables[f"{migrated.schema}.{name}" if migrated.schema else name]
                columns = [table.c[c] for c in TABLE_COLUMNS[name]]
                stored = conn.execute(select(*columns).order_by(*table.primary_key.columns)).all()
                expected = sorted(
                    (tuple(d.values()) for d in _insertable(name, rows)),
                    key=lambda r: tuple(r[i] for i, c in enumerate(columns) if c.primary_key),
                )
                assert [tuple(r) for r in stored] == [e[: len(columns)] for e in expected], name
    finally:
        engine.dispose()


def test_naive_datetime_is_refused_by_the_database_layer(migrated: Any) -> None:
    md = build_metadata(migrated.schema)
    table = md.tables[f"{migrated.schema}.intents" if migrated.schema else "intents"]
    engine = migrated.engine()
    try:
        with pytest.raises(StatementError, match="naive"), engine.begin() as conn:
            conn.execute(table.insert(), {"id": 1, "last_seen_at": datetime(2021, 1, 1)})
    finally:
        engine.dispose()
