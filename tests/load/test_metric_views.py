"""The metric views (migration 0005): the same rows on SQLite and PostgreSQL, and the values
computed here in Python from the export itself, over a range that crosses a DST switch."""

from __future__ import annotations

import copy
import json
import math
import re
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime, tzinfo
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from etl.load.views import COLUMN_COMMENTS, VIEWS, view_sql
from etl.windows import parse_instant, parse_zone
from tests.conftest import TestWarehouse
from tests.pipeline.cli_helpers import etl, write_config

OSLO = parse_zone("Europe/Oslo")
START, UNTIL = "2024-03-28", "2024-04-02"  # Europe/Oslo moves to summer time on 2024-03-31

SEED_EXPORT = Path(__file__).parents[1] / "fixtures" / "seed-example-export.json"

Row = tuple[Any, ...]


def _config(tmp_path: Path, reporting_zone: str | None = None) -> Path:
    sections: dict[str, dict[str, Any]] = {
        "pipeline": {"start": START, "window": "1d", "lag": "2h", "timezone": "Europe/Oslo"}
    }
    if reporting_zone is not None:
        sections["reporting"] = {"timezone": reporting_zone}
    return write_config(tmp_path, **sections)


def _load(wh: TestWarehouse, api: Any, config: Path) -> None:
    etl("migrate", wh=wh, config=config, check=True)
    etl("backfill", "--from", START, "--to", UNTIL, wh=wh, api=api, config=config, check=True)


def _plain(value: Any) -> Any:
    """One spelling for both warehouses: SQLite has no dates or booleans, PostgreSQL's SUM
    would give a Decimal (the views cast it away: a Decimal here is a bug)."""
    assert not isinstance(value, Decimal), "a view returned a numeric: cast it to BIGINT"
    if isinstance(value, date) and not isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def view(wh: TestWarehouse, name: str, order: str) -> list[Row]:
    engine = wh.engine()
    try:
        with engine.connect() as conn:
            rows = conn.execute(text(f"SELECT * FROM {wh.table(name)} ORDER BY {order}")).all()
    finally:
        engine.dispose()
    return [tuple(_plain(v) for v in row) for row in rows]


def same(actual: Iterable[Row], expected: Iterable[Row]) -> bool:
    """Row for row; floats to 12 significant digits (a mean's last bits depend on the order
    in which a warehouse sums)."""

    def close(a: Any, b: Any) -> bool:
        if isinstance(a, float) or isinstance(b, float):
            return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-12)
        return bool(a == b)

    actual, expected = list(actual), list(expected)
    return len(actual) == len(expected) and all(
        len(a) == len(e) and all(close(x, y) for x, y in zip(a, e, strict=True))
        for a, e in zip(actual, expected, strict=True)
    )


# -- the metrics, from the export, without the warehouse -----------------------------------


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _path(message: dict[str, Any], *keys: str) -> Any:
    value: Any = message
    for key in keys:
        value = _obj(value).get(key)
    return value


def facts_from_export(conversations: Iterable[dict[str, Any]], zone: tzinfo) -> list[Row]:
    """conversation_facts, computed from the exported JSON, in the view's column order."""
    rows = []
    for conv in conversations:
        created = _time(_path(conv, "time", "created"))
        last = _time(_path(conv, "time", "last_message_created"))
        local = created.astimezone(zone) if created else None
        messages = [m for m in conv.get("messages", []) if isinstance(m, dict)]
        questions = [m for m in messages if m.get("type") == "question"]
        handed_over = any(
            m.get("is_human_chat") is True
            or _path(m, "actions", "displayed", "transfer_to_human") is True
            for m in messages
        )
        shown = sum(
            len([b for b in item.get("buttons", []) if isinstance(b, dict)])
            for m in messages
            for item in m.get("content", [])
            if isinstance(item, dict) and item.get("type") == "link"
        )
        rows.append(
            (
                conv["id"],
                conv.get("environment"),
                local.date().isoformat() if local else None,
                local.hour if local else None,
                len(messages),
                len(questions),
                len([m for m in messages if m.get("type") == "answer"]),
                int(handed_over),
                int(bool(questions) and not handed_over),
                len([m for m in questions if _int(_path(m, "intents", "predicted", "id")) is None]),
                shown,
                len([m for m in messages if _int(_path(m, "button_clicked", "id")) is not None]),
                (last - created).total_seconds() if created and last else None,
                conv.get("quality_label"),
                int(conv["reviewed"]) if isinstance(conv.get("reviewed"), bool) else None,
            )
        )
    return sorted(rows, key=lambda r: r[0])


def daily_from_facts(facts: list[Row]) -> list[Row]:
    groups: dict[tuple[Any, Any], list[Row]] = defaultdict(list)
    for row in facts:
        groups[(row[2], row[1])].append(row)
    result = []
    for (day, environment), rows in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        n = len(rows)
        engaged = sum(1 for r in rows if r[5] > 0)
        contained = sum(r[8] for r in rows)
        handed_over = sum(r[7] for r in rows)
        messages = sum(r[4] for r in rows)
        questions = sum(r[5] for r in rows)
        not_understood = sum(r[9] for r in rows)
        durations = [r[12] for r in rows if r[12] is not None]
        result.append(
            (
                day,
                environment,
                n,
                engaged,
                contained,
                handed_over,
                messages,
                questions,
                not_understood,
                contained / engaged if engaged else None,
                handed_over / n,
                not_understood / questions if questions else None,
                messages / n,
                math.fsum(durations) / len(durations) if durations else None,
            )
        )
    return result


def intents_from_export(conversations: Iterable[dict[str, Any]], zone: tzinfo) -> list[Row]:
    counts: dict[tuple[Any, ...], int] = defaultdict(int)
    titles: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    for conv in conversations:
        created = _time(_path(conv, "time", "created"))
        day = created.astimezone(zone).date().isoformat() if created else None
        for m in conv.get("messages", []):
            if not isinstance(m, dict) or m.get("type") != "question":
                continue
            intent = _path(m, "intents", "predicted")
            intent_id = _int(_obj(intent).get("id"))
            if intent_id is None:
                continue
            key = (day, conv.get("environment"), intent_id)
            counts[key] += 1
            title = _obj(intent).get("title")
            title = title if isinstance(title, str) else None
            # The latest occurrence that has a title: by time, then by message id.
            rank = (
                title is not None,
                _time(m.get("time")) or datetime.min.replace(tzinfo=zone),
                m["id"],
            )
            if key not in titles or rank > titles[key][0]:
                titles[key] = (rank, title)
    return sorted(
        ((*key, titles[key][1], n) for key, n in counts.items()),
        key=lambda r: (r[0], r[1], r[2]),
    )


def buttons_from_export(conversations: Iterable[dict[str, Any]], zone: tzinfo) -> list[Row]:
    counts: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0, 0])
    for conv in conversations:
        created = _time(_path(conv, "time", "created"))
        day = created.astimezone(zone).date().isoformat() if created else None
        for m in conv.get("messages", []):
            if not isinstance(m, dict):
                continue
            for item in m.get("content", []):
                if isinstance(item, dict) and item.get("type") == "link":
                    for button in item.get("buttons", []):
                        button_id = _int(_obj(button).get("id"))
                        if button_id is not None:
                            counts[(day, conv.get("environment"), button_id)][0] += 1
            clicked = _int(_path(m, "button_clicked", "id"))
            if clicked is not None:
                counts[(day, conv.get("environment"), clicked)][1] += 1
    return sorted(((*key, s, c) for key, (s, c) in counts.items()), key=lambda r: r[:3])


def latest_button_texts(conversations: Iterable[dict[str, Any]]) -> dict[int, str]:
    """Per button, its text in the conversation that started last (shown or clicked; then the
    later message, then the later place in it, a click before any showing)."""
    latest: dict[int, tuple[Any, ...]] = {}
    for conv in conversations:
        started = _time(_path(conv, "time", "created"))
        for m in conv.get("messages", []):
            if not isinstance(m, dict):
                continue
            seen = []
            for c_pos, item in enumerate(m.get("content", [])):
                if isinstance(item, dict) and item.get("type") == "link":
                    for b_pos, button in enumerate(item.get("buttons", [])):
                        seen.append((_obj(button), c_pos * 1_000_000 + b_pos))
            seen.append((_obj(m.get("button_clicked")), -1))
            for button, place in seen:
                button_id, text_ = _int(button.get("id")), button.get("text")
                if button_id is None or not isinstance(text_, str) or started is None:
                    continue
                rank = (started, m["id"], place, text_)
                if button_id not in latest or rank[:3] > latest[button_id][:3]:
                    latest[button_id] = rank
    return {button_id: rank[3] for button_id, rank in latest.items()}


# -- the tests --------------------------------------------------------------------------------


def test_docs_define_each_view_with_the_sql_the_migration_runs() -> None:
    docs = (Path(__file__).parents[2] / "docs" / "metrics.md").read_text()
    blocks = re.findall(r"```sql\n(.*?)\n```", docs, flags=re.DOTALL)
    assert blocks == [view_sql(name, "postgresql") for name in VIEWS]
    for name, columns in COLUMN_COMMENTS.items():
        for column in columns:
            assert f"| `{column}` |" in docs, (name, column)


@pytest.mark.postgres
def test_views_agree_on_both_warehouses_and_with_the_export(
    sqlite_warehouse: TestWarehouse,
    pg_warehouse: TestWarehouse,
    make_sim: Any,
    sim_dataset: Any,
    tmp_path: Path,
) -> None:
    api = make_sim()
    config = _config(tmp_path)
    ids = api.matching_ids(parse_instant(START, OSLO), parse_instant(UNTIL, OSLO))
    export = [sim_dataset.conversation(i) for i in ids]
    handover_requested = _transfer_without_agent(export)
    renamed = _renamed_button(export)
    extra = tmp_path / "hand-made.json"
    extra.write_text(json.dumps(_as_export(handover_requested, renamed)))
    for wh in (sqlite_warehouse, pg_warehouse):
        _load(wh, api, config)
        etl("load-file", str(extra), wh=wh, config=config, check=True)
    export += [handover_requested, renamed]

    facts = facts_from_export(export, OSLO)
    assert {r[2] for r in facts} >= {"2024-03-30", "2024-03-31", "2024-04-01"}  # the switch
    expected = {
        "conversation_facts": [r[:2] + r[2:] for r in facts],
        "daily_metrics": daily_from_facts(facts),
        "intent_daily": intents_from_export(export, OSLO),
        "button_daily": buttons_from_export(export, OSLO),
    }
    orders = {
        "conversation_facts": "conversation_id",
        "daily_metrics": "local_date, environment",
        "intent_daily": "local_date, environment, intent_id",
        "button_daily": "local_date, environment, button_id",
        "button_metrics": "button_id",
    }
    results = {}
    for wh in (sqlite_warehouse, pg_warehouse):
        got = {name: view(wh, name, order) for name, order in orders.items()}
        # started_at is the stored created_at: compare the rest (its UTC text differs by kind).
        got["conversation_facts"] = [r[:2] + r[3:] for r in got["conversation_facts"]]
        for name, rows in expected.items():
            assert same(got[name], rows), (wh.kind, name, _first_difference(got[name], rows))
        results[wh.kind] = got
    for name in orders:
        assert same(results["sqlite"][name], results["postgres"][name]), name
    assert results["sqlite"]["daily_metrics"], "the dataset gave no rows"
    assert any(r[7] for r in facts) and any(r[8] for r in facts) and any(r[9] for r in facts)
    assert any(r[10] for r in facts) and any(r[11] for r in facts)

    # button_metrics: the per-day counts summed over all time.
    totals: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for _day, _env, button_id, shown, clicked in expected["button_daily"]:
        totals[button_id][0] += shown
        totals[button_id][1] += clicked
    metrics = results["postgres"]["button_metrics"]
    assert [(r[0], r[2], r[3]) for r in metrics] == sorted((k, *v) for k, v in totals.items())
    texts = latest_button_texts(export)
    assert "Renamed by the bot's editors" in texts.values()
    for button_id, text_, shown, clicked, rate in metrics:
        assert rate == (clicked / shown if shown else None)
        assert text_ == texts[button_id], button_id


def _transfer_without_agent(export: list[dict[str, Any]]) -> dict[str, Any]:
    """A conversation that displayed a transfer to a human whom no agent then joined: handed
    over all the same. The simulator always has an agent join."""
    template = next(c for c in export if any(m.get("type") == "answer" for m in c["messages"]))
    conv = copy.deepcopy(template)
    conv["id"] = 900_000_001
    for m in conv["messages"]:
        m["id"] += 4_000_000_000
        m["is_human_chat"] = False
    answer = next(m for m in conv["messages"] if m.get("type") == "answer")
    answer.setdefault("actions", {}).setdefault("displayed", {"type": "action", "id": 3001})
    answer["actions"]["displayed"]["transfer_to_human"] = True
    return conv


def _renamed_button(export: list[dict[str, Any]]) -> dict[str, Any]:
    """The last conversation to start, showing a button whose text the bot's editors changed:
    button_metrics must give the new text, whatever the other conversations of its day say."""
    template = next(
        c
        for c in export
        if any(
            isinstance(item, dict) and item.get("type") == "link" and item.get("buttons")
            for m in c["messages"]
            for item in m.get("content", [])
        )
    )
    conv = copy.deepcopy(template)
    conv["id"] = 900_000_002
    conv["time"]["created"] = "2024-04-01T23:30:00+02:00"  # the range's last local day
    for m in conv["messages"]:
        m["id"] += 4_100_000_000
    button = next(
        b
        for m in conv["messages"]
        for item in m.get("content", [])
        if isinstance(item, dict) and item.get("type") == "link"
        for b in item.get("buttons", [])
        if isinstance(b, dict) and isinstance(b.get("id"), int)
    )
    button["text"] = "Renamed by the bot's editors"
    return conv


def _as_export(*conversations: dict[str, Any]) -> list[dict[str, Any]]:
    seed = json.loads(SEED_EXPORT.read_text())
    head, tail = seed[0], seed[-1]
    head["conversations"] = tail["conversations"] = len(conversations)
    return [head, *conversations, tail]


def _first_difference(actual: list[Row], expected: list[Row]) -> Any:
    for a, e in zip(actual, expected, strict=False):
        if not same([a], [e]):
            return {"view": a, "export": e}
    return {"rows in view": len(actual), "rows expected": len(expected)}


def test_pipeline_daily_counts_the_run_log(
    warehouse: TestWarehouse, make_sim: Any, tmp_path: Path
) -> None:
    api = make_sim()
    before = datetime.now(UTC).date().isoformat()
    _load(warehouse, api, _config(tmp_path))
    after = datetime.now(UTC).date().isoformat()
    engine = warehouse.engine()
    try:
        with engine.connect() as conn:
            runs = conn.execute(
                text(f"SELECT outcome, conversations, seconds FROM {warehouse.table('etl_runs')}")
            ).all()
    finally:
        engine.dispose()
    ((day, windows, failed, interrupted, conversations, seconds),) = view(
        warehouse, "pipeline_daily", "load_date"
    )
    assert day in {before, after}
    assert (windows, failed, interrupted) == (len(runs), 0, 0) == (5, 0, 0)
    assert conversations == sum(r.conversations for r in runs) > 0
    assert math.isclose(seconds, sum(r.seconds for r in runs))


def test_a_new_reporting_zone_is_refused_until_migrate_recomputes(
    warehouse: TestWarehouse, make_sim: Any, sim_dataset: Any, tmp_path: Path
) -> None:
    api = make_sim()
    _load(warehouse, api, _config(tmp_path))
    tokyo = _config(tmp_path, reporting_zone="Asia/Tokyo")

    refused = etl("run", "--until", UNTIL, wh=warehouse, api=api, config=tokyo)
    assert refused.code != 0
    assert "reporting.timezone is Asia/Tokyo" in refused.output
    assert "are for Europe/Oslo: run `etl migrate`" in refused.output

    migrated = etl("migrate", wh=warehouse, config=tokyo, check=True)
    ids = api.matching_ids(parse_instant(START, OSLO), parse_instant(UNTIL, OSLO))
    assert f"local dates of {len(ids)} conversations computed" in migrated.stderr
    export = [sim_dataset.conversation(i) for i in ids]
    tokyo_zone = parse_zone("Asia/Tokyo")
    got = [r[:2] + r[3:] for r in view(warehouse, "conversation_facts", "conversation_id")]
    assert same(got, facts_from_export(export, tokyo_zone))

    # A load now stores Tokyo dates too (one conversation deleted by hand comes back), and a
    # second migrate has nothing to do.
    engine = warehouse.engine()
    try:
        with engine.begin() as conn:
            conn.execute(
                text(f"DELETE FROM {warehouse.table('conversations')} WHERE id = {ids[0]}")
            )
    finally:
        engine.dispose()
    etl("backfill", "--from", START, "--to", UNTIL, wh=warehouse, api=api, config=tokyo, check=True)
    got = [r[:2] + r[3:] for r in view(warehouse, "conversation_facts", "conversation_id")]
    assert same(got, facts_from_export(export, tokyo_zone))
    again = etl("migrate", wh=warehouse, config=tokyo, check=True)
    assert "local dates of" not in again.stderr


def test_a_duration_is_exact_when_a_time_falls_late_in_its_second(
    migrated: TestWarehouse, tmp_path: Path
) -> None:
    """SQLite's strftime rounds a fraction to milliseconds: before revision 0007 a start or an
    end at ".9995" or later in its second made the SQLite duration one second off."""
    from tests.conftest import SEED_EXPORT

    query_info, conversation, post_query_info = json.loads(SEED_EXPORT.read_text())
    conversations = []
    for cid, (created, last) in enumerate(
        [
            ("2024-03-28T10:00:00.000000+00:00", "2024-03-28T10:00:10.999577+00:00"),
            ("2024-03-28T11:00:00.999700+00:00", "2024-03-28T11:00:09.000000+00:00"),
        ],
        start=1000002,
    ):
        copy_ = copy.deepcopy(conversation)
        copy_["id"] = cid
        copy_["time"] = {"created": created, "last_message_created": last}
        for k, message in enumerate(copy_["messages"]):
            message["id"] = cid * 100 + k
        conversations.append(copy_)
    query_info["conversations"] = post_query_info["conversations"] = 2
    path = tmp_path / "late-in-the-second.json"
    path.write_text(json.dumps([query_info, *conversations, post_query_info]))
    etl("load-file", str(path), wh=migrated, check=True)
    rows = view(migrated, "conversation_facts", "conversation_id")
    durations = {r[0]: float(r[-3]) for r in rows}
    assert durations == {1000002: pytest.approx(10.999577), 1000003: pytest.approx(8.0003)}
