"""Intent and action references, on SQLite and PostgreSQL: each message keeps the values of its
own reference, and the `intents`/`actions` tables hold, per attribute, the latest non-null
value seen (issue 14, "Why" 1 and 2)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from etl.load.schema import build_metadata
from tests.conftest import TestWarehouse
from tests.load.test_loaded_values import seed_elements
from tests.pipeline.cli_helpers import etl


def typed(wh: TestWarehouse, table: str, *columns: str) -> list[tuple[Any, ...]]:
    """Rows read through the schema's types (booleans, JSON and UTC times on both databases),
    ordered by the first column."""
    t = build_metadata(wh.schema).tables[f"{wh.schema}.{table}" if wh.schema else table]
    engine = wh.engine()
    try:
        with engine.connect() as conn:
            query = select(*(t.c[c] for c in columns)).order_by(t.c[columns[0]])
            return [tuple(r) for r in conn.execute(query)]
    finally:
        engine.dispose()


def _question(mid: int, when: str, intent: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": mid,
        "type": "question",
        "time": when,
        "question": {
            "type": "question_analysis",
            "input": f"q{mid}",
            "analysis": [{"processed": "x", "winner": True, "intent": intent}],
        },
        "intents": {"predicted": intent},
    }


def _answer(mid: int, when: str, action: dict[str, Any]) -> dict[str, Any]:
    return {"id": mid, "type": "answer", "time": when, "actions": {"displayed": action}}


def _export(path: Path, messages: list[dict[str, Any]], current_time: str, cid: int = 1) -> Path:
    query_info, _, post_query_info = seed_elements()
    query_info["current_time"] = current_time
    query_info["conversations"] = 1
    conversation = {"type": "conversation", "id": cid, "messages": messages}
    path.write_text(json.dumps([query_info, conversation, post_query_info]))
    return path


def test_each_message_keeps_the_values_of_its_own_reference(
    migrated: TestWarehouse, tmp_path: Path
) -> None:
    first = {"type": "intent", "id": 5, "title": "Hi", "inherit_skill": True, "confidence": 0.91}
    second = {"type": "intent", "id": 5, "title": "Hi", "inherit_skill": False, "confidence": 0.42}
    v1 = {"type": "action", "id": 9, "action_type": "content", "title": "Welcome v1"}
    v2 = {"type": "action", "id": 9, "action_type": "content", "title": "Welcome v2"}
    messages = [
        _question(11, "2024-05-01T10:00:00+00:00", first),
        _answer(12, "2024-05-01T10:00:01+00:00", v1),
        _question(13, "2024-05-01T10:01:00+00:00", second),
        _answer(14, "2024-05-01T10:01:01+00:00", v2),
    ]
    etl("load-file", str(_export(tmp_path / "e.json", messages, "2024-05-02T00:00:00Z")),
        wh=migrated, check=True)  # fmt: skip
    got = typed(
        migrated,
        "messages",
        *("id", "predicted_intent_id", "predicted_intent_inherit_skill", "displayed_action_id"),
        "extra",
    )
    assert got == [
        (11, 5, True, None, {"intents": {"predicted": {"confidence": 0.91}}}),
        (12, None, None, 9, {"actions": {"displayed": {"title": "Welcome v1"}}}),
        (13, 5, False, None, {"intents": {"predicted": {"confidence": 0.42}}}),
        (14, None, None, 9, {"actions": {"displayed": {"title": "Welcome v2"}}}),
    ]
    analysis = typed(
        migrated, "intent_analysis", "message_id", "intent_id", "intent_inherit_skill", "extra"
    )
    assert analysis == [
        (11, 5, True, {"intent": {"confidence": 0.91}}),
        (13, 5, False, {"intent": {"confidence": 0.42}}),
    ]
    # The dimension tables: the latest reference's values.
    assert typed(migrated, "intents", "id", "title", "inherit_skill", "extra") == [
        (5, "Hi", False, {"confidence": 0.42})
    ]
    assert typed(migrated, "actions", "id", "action_type", "extra") == [
        (9, "content", {"title": "Welcome v2"})
    ]


def test_a_later_reference_without_a_title_does_not_blank_the_dimension(
    migrated: TestWarehouse, tmp_path: Path
) -> None:
    titled = {"type": "intent", "id": 5, "title": "Opening hours", "inherit_skill": True}
    untitled = {"type": "intent", "id": 5}
    # In one window: the title comes from the earlier reference.
    both = [
        _question(11, "2024-05-01T10:00:00+00:00", titled),
        _question(12, "2024-05-01T11:00:00+00:00", untitled),
    ]
    etl("load-file", str(_export(tmp_path / "a.json", both, "2024-05-02T00:00:00Z")),
        wh=migrated, check=True)  # fmt: skip
    assert typed(migrated, "intents", "title", "inherit_skill") == [("Opening hours", True)]
    # In a later window (another conversation): still there, last_seen_at moves on.
    later = [_question(21, "2024-06-01T10:00:00+00:00", untitled)]
    etl("load-file", str(_export(tmp_path / "b.json", later, "2024-06-02T00:00:00Z", cid=2)),
        wh=migrated, check=True)  # fmt: skip
    assert typed(migrated, "intents", "title", "inherit_skill", "last_seen_at") == [
        ("Opening hours", True, datetime(2024, 6, 1, 10, tzinfo=UTC))
    ]
    # An older window loaded afterwards fills nothing that is set and moves nothing back...
    older = [
        _question(31, "2024-04-01T10:00:00+00:00", {"type": "intent", "id": 5, "title": "Old"})
    ]
    etl("load-file", str(_export(tmp_path / "c.json", older, "2024-04-02T00:00:00Z", cid=3)),
        wh=migrated, check=True)  # fmt: skip
    assert typed(migrated, "intents", "title", "inherit_skill", "last_seen_at") == [
        ("Opening hours", True, datetime(2024, 6, 1, 10, tzinfo=UTC))
    ]
    # ... and a newer one with a title replaces it.
    newer = [
        _question(41, "2024-07-01T10:00:00+00:00", {"type": "intent", "id": 5, "title": "Hours"})
    ]
    etl("load-file", str(_export(tmp_path / "d.json", newer, "2024-07-02T00:00:00Z", cid=4)),
        wh=migrated, check=True)  # fmt: skip
    assert typed(migrated, "intents", "title", "inherit_skill") == [("Hours", True)]


def test_the_latest_value_per_attribute_whatever_the_order_of_windows(
    migrated: TestWarehouse, tmp_path: Path
) -> None:
    """Window A has the title "y" at 07:00; window B, loaded after A, has "x" at 05:00 and a
    reference without a title at 10:00: the latest title seen is "y" (found in review: "x"
    won, because B's row carried B's newest time for every attribute)."""
    a = [_question(11, "2024-05-01T07:00:00+00:00", {"type": "intent", "id": 5, "title": "y"})]
    b = [
        _question(21, "2024-05-01T05:00:00+00:00", {"type": "intent", "id": 5, "title": "x"}),
        _question(
            22, "2024-05-01T10:00:00+00:00", {"type": "intent", "id": 5, "inherit_skill": True}
        ),
    ]
    etl("load-file", str(_export(tmp_path / "a.json", a, "2024-05-02T00:00:00Z")),
        wh=migrated, check=True)  # fmt: skip
    etl("load-file", str(_export(tmp_path / "b.json", b, "2024-05-02T00:00:00Z", cid=2)),
        wh=migrated, check=True)  # fmt: skip
    assert typed(
        migrated, "intents", "title", "inherit_skill", "last_seen_at", "title_seen_at"
    ) == [("y", True, datetime(2024, 5, 1, 10, tzinfo=UTC), datetime(2024, 5, 1, 7, tzinfo=UTC))]
