"""`etl status --format prometheus` (issue 15, "Monitoring"): the Prometheus text format,
parsed back with prometheus_client's own parser and compared with what the warehouse holds,
on SQLite and PostgreSQL."""

from __future__ import annotations

import copy
import json
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Table, func, select
from sqlalchemy.engine import make_url

from etl.errors import ExitCode
from etl.fakeapi import Faults
from etl.load.loader import OUTCOMES
from etl.load.migrate import upgrade
from etl.load.schema import build_metadata
from etl.normalize import TABLE_COLUMNS
from etl.pipeline.status import prometheus_text
from tests.conftest import TestWarehouse
from tests.load.test_loaded_values import seed_elements
from tests.pipeline.cli_helpers import etl, write_config

FROM, TO, BROKEN_TO = "2024-03-28", "2024-03-30", "2024-03-31"  # daily windows in UTC
STATE_LABELS = ("state_key", "site", "environment")


def _families(exposition: str) -> dict[str, Metric]:
    families = list(text_string_to_metric_families(exposition))
    by_name = {family.name: family for family in families}
    assert len(by_name) == len(families), "a metric family twice"
    for family in families:
        assert family.name.startswith("convo_etl_"), family.name
        assert family.type == "gauge" and not family.name.endswith("_total"), family.name
        assert family.documentation.strip(), f"{family.name} has no HELP"
    return by_name


def _value(families: dict[str, Metric], name: str, **labels: str) -> float:
    (value,) = [s.value for s in families[name].samples if s.labels == labels]
    return value


def _unix(value: Any) -> float:
    if isinstance(value, str):  # SQLite, read without the column's type
        value = datetime.fromisoformat(value)
    return float((value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp())


class _Warehouse:
    """The pipeline tables of a test warehouse, read with SQLAlchemy Core."""

    def __init__(self, wh: TestWarehouse) -> None:
        self.wh = wh
        self.metadata = build_metadata(wh.schema)

    def table(self, name: str) -> Table:
        return self.metadata.tables[f"{self.wh.schema}.{name}" if self.wh.schema else name]

    def read(self, query: Any) -> list[dict[str, Any]]:
        engine = self.wh.engine()
        try:
            with engine.connect() as conn:
                return [dict(r) for r in conn.execute(query).mappings()]
        finally:
            engine.dispose()

    def count(self, name: str, *where: Any) -> int:
        (row,) = self.read(
            select(func.count().label("n")).select_from(self.table(name)).where(*where)
        )
        return int(row["n"])


def _poisoned_file(tmp_path: Path, count: int) -> Path:
    """`count` copies of the seed conversation (ids 1..count), the last one with a naive time."""
    query_info, seed, post_query_info = seed_elements()
    conversations = []
    for cid in range(1, count + 1):
        conversation = copy.deepcopy(seed)
        conversation["id"] = cid
        for at, message in enumerate(conversation["messages"]):
            message["id"] = cid * 100 + at
        conversations.append(conversation)
    conversations[-1]["messages"][1]["time"] = "2024-03-25T10:00:00"  # no offset: refused
    query_info["conversations"] = count
    path = tmp_path / "poisoned.json"
    path.write_text(json.dumps([query_info, *conversations, post_query_info]))
    return path


def test_prometheus_status_reports_what_the_warehouse_holds(
    warehouse: TestWarehouse, make_sim: Any, tmp_path: Path
) -> None:
    """Two daily windows load, the third fails (the server breaks its stream on every attempt),
    a saved file loads with one conversation quarantined: every metric is what the tables
    hold, and the numbers are the ones this history makes."""
    config = write_config(tmp_path)
    etl("migrate", wh=warehouse, config=config, check=True)
    good = make_sim()
    etl("backfill", "--from", FROM, "--to", TO, wh=warehouse, api=good, config=config, check=True)
    days = [datetime.fromisoformat(d).replace(tzinfo=UTC) for d in (FROM, "2024-03-29", TO)]
    distinct = len(good.matching_ids(days[0], days[-1]))
    # A conversation with interactions on both days comes in both windows.
    received = len(good.matching_ids(days[0], days[1])) + len(good.matching_ids(days[1], days[2]))
    assert distinct > 0
    port = good.port
    good.stop()  # the same site (URL), so the same state key: reuse the port
    broken = make_sim(faults=Faults(error_after=3), port=port)
    failed = etl("backfill", "--from", TO, "--to", BROKEN_TO, wh=warehouse, api=broken,
                 config=config)  # fmt: skip
    assert failed.code == ExitCode.UPSTREAM, failed.output
    etl("load-file", "--on-bad-conversation", "quarantine", str(_poisoned_file(tmp_path, 3)),
        wh=warehouse, config=config, check=True)  # fmt: skip

    before = time.time()
    result = etl("status", "--format", "prometheus", wh=warehouse, config=config, check=True)
    after = time.time()
    families = _families(result.stdout)
    db = _Warehouse(warehouse)
    (state,) = db.read(select(db.table("etl_state")))
    labels = {name: state[name] or "" for name in STATE_LABELS}
    runs = db.table("etl_runs")

    assert _value(families, "convo_etl_up") == 1
    assert _value(families, "convo_etl_migrated") == 1

    watermark = _unix(state["watermark"])
    assert watermark == datetime(2024, 3, 30, tzinfo=UTC).timestamp()  # the failed window's start
    assert _value(families, "convo_etl_watermark_timestamp_seconds", **labels) == watermark
    lag = _value(families, "convo_etl_lag_seconds", **labels)
    taken = _value(families, "convo_etl_status_timestamp_seconds")
    assert before - 1 <= taken <= after + 1
    assert abs(lag - (taken - watermark)) <= 1  # rounded to the second
    (last_ok,) = db.read(
        select(
            func.max(runs.c.window_end).label("end"), func.max(runs.c.finished_at).label("at")
        ).where(runs.c.state_key == state["state_key"], runs.c.outcome == "ok")
    )
    assert _unix(last_ok["end"]) == watermark
    assert (
        _value(families, "convo_etl_last_success_window_end_timestamp_seconds", **labels)
        == watermark
    )
    assert (
        abs(
            _value(families, "convo_etl_last_success_timestamp_seconds", **labels)
            - _unix(last_ok["at"])
        )
        < 1e-3
    )
    past = {
        s.labels["state"]: s.value
        for s in families["convo_etl_windows_past_watermark"].samples
        if all(s.labels[k] == v for k, v in labels.items())
    }
    assert past == {"loaded": 0, "failed": 1, "claimed": 0}
    assert past["failed"] == db.count("etl_windows", db.table("etl_windows").c.state == "failed")

    windows = {s.labels["outcome"]: s.value for s in families["convo_etl_windows"].samples}
    assert windows == {"ok": 3, "failed": 1, "interrupted": 0}  # two days and the file
    for outcome, count in windows.items():
        assert count == db.count("etl_runs", runs.c.outcome == outcome)

    (sums,) = db.read(
        select(
            *(
                func.sum(runs.c[name]).label(name)
                for name in ("conversations", *(f"conversations_{o}" for o in OUTCOMES))
            )
        ).where(runs.c.outcome == "ok")
    )
    conversations = _value(families, "convo_etl_conversations")
    assert conversations == sums["conversations"] == received + 3
    by_outcome = {
        s.labels["outcome"]: s.value for s in families["convo_etl_conversation_outcomes"].samples
    }
    assert by_outcome == {o: sums[f"conversations_{o}"] for o in OUTCOMES}
    assert by_outcome["new"] == distinct + 2 and by_outcome["rejected"] == 1
    assert sum(by_outcome.values()) == conversations

    assert _value(families, "convo_etl_rejects") == db.count("etl_rejects") == 1
    rows = {s.labels["table"]: s.value for s in families["convo_etl_table_rows"].samples}
    assert rows == {name: db.count(name) for name in TABLE_COLUMNS}
    assert rows["conversations"] == distinct + 2

    # The JSON forms carry the same totals; --json is --format json.
    as_json = json.loads(etl("status", "--json", wh=warehouse, config=config, check=True).stdout)
    formatted = etl("status", "--format", "json", wh=warehouse, config=config, check=True).stdout
    assert json.loads(formatted)["totals"] == as_json["totals"]
    assert as_json["totals"]["windows"] == windows
    assert as_json["totals"]["conversations"] == conversations


def test_prometheus_status_of_an_unmigrated_warehouse(warehouse: TestWarehouse) -> None:
    """No schema, then one at an older revision: valid output saying so, and exit code 0.
    (A SQLite file that is not there is a mistyped path: exit 2, and no file made.)"""
    if warehouse.kind == "sqlite":
        path = Path(make_url(warehouse.url).database or "")
        missing = etl("status", "--format", "prometheus", wh=warehouse)
        assert missing.code == 2 and "does not exist" in missing.output
        assert not path.exists()
        sqlite3.connect(path).close()  # an empty file: a warehouse without a schema
    for step in ("no schema", "revision 0001"):
        if step == "revision 0001":
            engine = warehouse.engine()
            try:
                upgrade(engine, warehouse.schema, "0001")
            finally:
                engine.dispose()
        result = etl("status", "--format", "prometheus", wh=warehouse)
        assert result.code == 0, f"{step}: {result.output}"
        families = _families(result.stdout)
        assert set(families) == {"convo_etl_up", "convo_etl_migrated"}, step
        assert _value(families, "convo_etl_up") == 1
        assert _value(families, "convo_etl_migrated") == 0, step
    text = etl("status", wh=warehouse, check=True).stdout  # the default format is text
    assert "etl migrate" in text and not text.startswith("#")


def test_prometheus_status_of_an_unreachable_database_says_down(tmp_path: Path) -> None:
    wh = TestWarehouse("postgres", "postgresql+psycopg://postgres@127.0.0.1:1/none", None)
    result = etl("status", "--format", "prometheus", wh=wh)
    assert result.code == ExitCode.DATABASE, result.output
    families = _families(result.stdout)
    assert set(families) == {"convo_etl_up"}
    assert _value(families, "convo_etl_up") == 0
    assert "127.0.0.1:1" in result.stderr


def test_json_flag_with_another_format_is_a_usage_error(sqlite_warehouse: TestWarehouse) -> None:
    result = etl("status", "--json", "--format", "prometheus", wh=sqlite_warehouse)
    assert result.code == ExitCode.CONFIG and "--json" in result.stderr
    assert result.stdout == ""


def test_prometheus_text_labels_each_state_and_counts_its_windows_past_the_watermark() -> None:
    """The snapshot → metrics mapping alone: two state keys, one with an environment; holes
    counted per ledger state, every state and outcome present even at 0."""

    def state(key: str, environment: str | None, past: list[str]) -> dict[str, Any]:
        return {
            "state_key": key,
            "site": "https://bot.example",
            "environment": environment,
            "watermark": "2024-03-30T00:00:00+00:00",
            "lag_seconds": 7200,
            "windows_after_watermark": [{"state": name} for name in past],
            "last_ok_window_end": "2024-03-31T00:00:00+00:00" if past else None,
            "last_ok_finished_at": None,
        }

    snapshot = {
        "migrated": True,
        "now": "2024-03-30T02:00:00+00:00",
        "states": [
            state("a", None, []),
            state("b", "live", ["failed", "loaded", "claimed", "loaded"]),
        ],
        "rejects": {"count": 2},
        "tables": {"conversations": 5},
        "totals": {
            "windows": {"ok": 4, "failed": 1, "interrupted": 0},
            "conversations": 9,
            "conversation_outcomes": {"new": 5, "older": 4},
        },
        "personal_data": {"forgotten": 2, "deleted": 3, "pruned": 0},
    }
    families = _families(prometheus_text(snapshot))
    erased = families["convo_etl_personal_data_conversations"].samples
    assert {s.labels["action"]: s.value for s in erased} == {
        "forgotten": 2,
        "deleted": 3,
        "pruned": 0,
    }
    a = {"state_key": "a", "site": "https://bot.example", "environment": ""}
    b = {**a, "state_key": "b", "environment": "live"}
    assert _value(families, "convo_etl_lag_seconds", **a) == 7200
    assert _value(families, "convo_etl_watermark_timestamp_seconds", **b) == 1711756800
    ends = families["convo_etl_last_success_window_end_timestamp_seconds"].samples
    assert [(s.labels["state_key"], s.value) for s in ends] == [("b", 1711843200)]
    assert not families["convo_etl_last_success_timestamp_seconds"].samples
    for labels, counts in ((a, (0, 0, 0)), (b, (2, 1, 1))):
        for name, count in zip(("loaded", "failed", "claimed"), counts, strict=True):
            assert (
                _value(families, "convo_etl_windows_past_watermark", **labels, state=name) == count
            )
    assert _value(families, "convo_etl_windows", outcome="failed") == 1
    assert _value(families, "convo_etl_conversation_outcomes", outcome="older") == 4
    assert _value(families, "convo_etl_rejects") == 2
    assert _value(families, "convo_etl_table_rows", table="conversations") == 5
    assert _value(families, "convo_etl_status_timestamp_seconds") == 1711764000
    down = _families(prometheus_text(None))
    assert set(down) == {"convo_etl_up"} and _value(down, "convo_etl_up") == 0


def test_a_state_key_whose_first_window_failed_is_shown(migrated: TestWarehouse) -> None:
    """Until its first window loads, a state key has no etl_state row, and status said no
    window had completed and showed none of its windows, the failed one included."""
    metadata = build_metadata(migrated.schema)
    windows = metadata.tables[
        f"{migrated.schema}.etl_windows" if migrated.schema else "etl_windows"
    ]
    day = datetime(2024, 3, 1, tzinfo=UTC)
    engine = migrated.engine()
    try:
        with engine.begin() as conn:
            for start, state, error in ((1, "failed", "the API failed with HTTP 500"),
                                        (2, "loaded", None), (3, "loaded", None)):  # fmt: skip
                conn.execute(
                    windows.insert().values(
                        state_key="k" * 40, window_start=day.replace(day=start),
                        window_end=day.replace(day=start + 1), state=state, error=error,
                        committed_at=None if error else datetime.now(UTC),
                    )
                )  # fmt: skip
    finally:
        engine.dispose()
    text = etl("status", wh=migrated, check=True).stdout
    assert "none yet for state key kkkkkkkkkkkk: its first window has not loaded" in text
    assert "3 window(s) past the watermark" in text and "the API failed with HTTP 500" in text
    (state,) = json.loads(etl("status", "--json", wh=migrated, check=True).stdout)["states"]
    assert state["watermark"] is None
    assert [w["state"] for w in state["windows_after_watermark"]] == ["failed", "loaded", "loaded"]
    families = _families(etl("status", "--format", "prometheus", wh=migrated, check=True).stdout)
    past = {
        s.labels["state"]: s.value
        for s in families["convo_etl_windows_past_watermark"].samples
        if s.labels["state_key"] == "k" * 40
    }
    assert past == {"failed": 1, "loaded": 2, "claimed": 0}
