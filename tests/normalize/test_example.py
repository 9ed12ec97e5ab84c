"""The documented example export, normalized: row counts, values, determinism."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from etl.normalize import (
    TABLE_COLUMNS,
    NormalizedConversation,
    normalize_conversation,
)

EXPORT = Path(__file__).parents[1] / "fixtures" / "seed-example-export.json"


@pytest.fixture(scope="module")
def export() -> list[Any]:
    data: list[Any] = json.loads(EXPORT.read_text())
    return data


@pytest.fixture(scope="module")
def conversation(export: list[Any]) -> dict[str, Any]:
    conv: dict[str, Any] = export[1]
    return conv


def _rows(nc: NormalizedConversation, table: str) -> list[dict[str, Any]]:
    return [dict(zip(TABLE_COLUMNS[table], row, strict=True)) for row in nc.rows[table]]


def test_documented_counts(conversation: dict[str, Any]) -> None:
    nc = normalize_conversation(conversation)
    counts = {table: len(rows) for table, rows in nc.rows.items()}
    assert counts == {
        "conversations": 1,
        "messages": 4,
        "content": 9,
        "buttons": 7,
        "intent_analysis": 1,
        # Four references to intent 1014 and two to action 3064, each time with the same
        # values: only the latest of each is kept (normalize.references), and the loader
        # folds what is left per id.
        "intents": 1,
        "actions": 3,
    }
    assert set(nc.rows) == set(TABLE_COLUMNS)
    for table, rows in nc.rows.items():
        assert all(len(row) == len(TABLE_COLUMNS[table]) for row in rows)
        # The documented example has nothing undocumented: every extra is empty.
        assert all(row[TABLE_COLUMNS[table].index("extra")] is None for row in rows)


def test_documented_values(conversation: dict[str, Any]) -> None:
    nc = normalize_conversation(conversation)
    assert nc.id == 1000001
    conv = _rows(nc, "conversations")[0]
    assert conv["created_at"] == datetime(2021, 1, 28, 16, 20, 48, 812727, tzinfo=UTC)
    assert conv["created_at"].tzinfo is UTC
    assert conv["reviewed"] is False
    assert conv["message_count"] == 4
    assert conv["raw"] is None

    messages = {m["id"]: m for m in _rows(nc, "messages")}
    assert [m["position"] for m in _rows(nc, "messages")] == [0, 1, 2, 3]
    clicked = messages[1000006]
    assert clicked["clicked_button_id"] == 7
    assert clicked["clicked_button_hidden"] is False
    assert clicked["came_from_action_id"] == 3064
    assert clicked["displayed_action_id"] == 3065
    question = messages[1000004]
    assert question["labels"] == ["Perfect Match"]
    assert question["predicted_intent_id"] == 1014
    assert question["predicted_intent_title"] == "All content"
    assert messages[1000003]["system_action_trigger"] == "welcome_action"

    content = {(c["message_id"], c["position"]): c for c in _rows(nc, "content")}
    assert content[(1000005, 2)]["video_type"] == "vimeo"
    assert content[(1000005, 3)]["json"] == {"some": "json"}
    buttons = _rows(nc, "buttons")
    assert [(b["content_position"], b["position"], b["button_id"]) for b in buttons][:2] == [
        (4, 0, 7),
        (4, 1, 8),
    ]
    assert buttons[2]["hidden"] is True
    analysis = _rows(nc, "intent_analysis")[0]
    assert analysis["winner"] is True
    assert analysis["intent_id"] == 1014


def test_keep_raw_keeps_the_conversation(conversation: dict[str, Any]) -> None:
    nc = normalize_conversation(conversation, keep_raw=True)
    assert _rows(nc, "conversations")[0]["raw"] == conversation


def test_hash_and_rows_are_deterministic(conversation: dict[str, Any]) -> None:
    a = normalize_conversation(conversation)
    b = normalize_conversation(json.loads(json.dumps(conversation)))
    assert a == b
    assert len(a.content_hash) == 32
    changed = copy.deepcopy(conversation)
    changed["messages"][2]["content"][0]["text"] += " "
    assert normalize_conversation(changed).content_hash != a.content_hash
    changed = copy.deepcopy(conversation)
    changed["messages"].append({"id": 1, "type": "question"})
    assert normalize_conversation(changed).content_hash != a.content_hash
