"""What the warehouse holds after `etl load-file`, value by value, on SQLite and PostgreSQL:
the seed example's intent columns, and a re-export that shows fewer buttons than before.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from sqlalchemy import text

from tests.conftest import SEED_EXPORT, TestWarehouse
from tests.pipeline.cli_helpers import etl, write_config


def rows(wh: TestWarehouse, sql: str) -> list[tuple[Any, ...]]:
    engine = wh.engine()
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql))]
    finally:
        engine.dispose()


def seed_elements() -> list[Any]:
    elements: list[Any] = json.loads(SEED_EXPORT.read_text())
    return elements


def write_export(path: Path, conversation: dict[str, Any], current_time: str) -> Path:
    query_info, _, post_query_info = seed_elements()
    query_info["current_time"] = current_time
    path.write_text(json.dumps([query_info, conversation, post_query_info]))
    return path


def test_seed_example_intent_analysis_values(migrated: TestWarehouse) -> None:
    etl("load-file", str(SEED_EXPORT), wh=migrated, check=True)
    analysis = rows(
        migrated,
        "SELECT message_id, position, conversation_id, processed, translated, winner, "
        f"intent_id, intent_title, intent_inherit_skill, extra FROM {migrated.table('intent_analysis')}",
    )
    assert analysis == [
        (
            1000004,
            0,
            1000001,
            "show myself everyth content",
            "show myself everyth content",
            True,
            1014,
            "All content",
            True,
            None,
        )
    ]
    intents = rows(
        migrated,
        f"SELECT id, title, inherit_skill, extra FROM {migrated.table('intents')}",
    )
    assert intents == [(1014, "All content", True, None)]


def test_intent_columns_keep_their_own_values(migrated: TestWarehouse, tmp_path: Path) -> None:
    """The seed's single analysis has winner = inherit_skill = true and id/title that cannot be
    confused; here every intent column differs from its neighbours, so a swap shows."""
    conversation = copy.deepcopy(seed_elements()[1])
    question = conversation["messages"][1]["question"]
    question["analysis"] = [
        {
            "processed": "p0",
            "translated": "t0",
            "winner": False,
            "intent": {"type": "intent", "id": 2001, "title": "Loser", "inherit_skill": True},
        },
        {
            "processed": "p1",
            "translated": "t1",
            "winner": True,
            "intent": {"type": "intent", "id": 2002, "title": "Winner", "inherit_skill": False},
        },
    ]
    export = write_export(tmp_path / "export.json", conversation, "2021-01-28T18:00:00+01:00")
    etl("load-file", str(export), wh=migrated, check=True)
    analysis = rows(
        migrated,
        "SELECT position, processed, translated, winner, intent_id, intent_title, "
        f"intent_inherit_skill FROM {migrated.table('intent_analysis')} ORDER BY position",
    )
    assert analysis == [
        (0, "p0", "t0", False, 2001, "Loser", True),
        (1, "p1", "t1", True, 2002, "Winner", False),
    ]
    intents = rows(
        migrated,
        f"SELECT id, title, inherit_skill FROM {migrated.table('intents')} ORDER BY id",
    )
    assert intents == [(1014, "All content", True), (2001, "Loser", True), (2002, "Winner", False)]


def test_reexport_with_a_button_fewer_keeps_only_the_new_buttons(
    migrated: TestWarehouse, tmp_path: Path
) -> None:
    conversation = copy.deepcopy(seed_elements()[1])
    conversation["messages"] = conversation["messages"][3:]  # the answer with one link item
    link = conversation["messages"][0]["content"][1]
    assert link["type"] == "link"
    link["buttons"] = [
        {"type": "button", "id": 13, "button_type": "action", "text": "More buttons"},
        {"type": "button", "id": 14, "button_type": "url", "text": "Docs", "url": "https://x.test"},
    ]
    first = write_export(tmp_path / "first.json", conversation, "2021-01-28T18:00:00+01:00")
    etl("load-file", str(first), wh=migrated, check=True)
    select = (
        "SELECT conversation_id, message_id, content_position, position, button_id, text, url "
        f"FROM {migrated.table('buttons')} ORDER BY message_id, content_position, position"
    )
    assert rows(migrated, select) == [
        (1000001, 1000006, 1, 0, 13, "More buttons", None),
        (1000001, 1000006, 1, 1, 14, "Docs", "https://x.test"),
    ]

    newer = copy.deepcopy(conversation)
    newer["messages"][0]["content"][1]["buttons"] = [
        {"type": "button", "id": 14, "button_type": "url", "text": "Docs", "url": "https://x.test"}
    ]
    second = write_export(tmp_path / "second.json", newer, "2021-01-29T09:00:00+01:00")
    etl("load-file", str(second), wh=migrated, check=True)
    assert rows(migrated, select) == [(1000001, 1000006, 1, 0, 14, "Docs", "https://x.test")]


def test_an_instant_whose_local_day_python_cannot_hold_loads_without_one(
    migrated: TestWarehouse, tmp_path: Path
) -> None:
    """9999-12-31T23:30Z is a valid instant, but in Oslo it is already year 10000."""
    config = write_config(tmp_path, pipeline={"timezone": "Europe/Oslo"})
    etl("migrate", wh=migrated, config=config, check=True)
    conversation = copy.deepcopy(seed_elements()[1])
    conversation["time"]["created"] = "9999-12-31T23:30:00+00:00"
    path = write_export(tmp_path / "late.json", conversation, "2024-04-01T00:00:00+00:00")
    result = etl("load-file", str(path), wh=migrated, config=config)
    assert result.code == 0, result.output
    (stored,) = rows(
        migrated,
        f"SELECT created_at, local_date, local_hour FROM {migrated.table('conversations')}",
    )
    assert str(stored[0]).startswith("9999-12-31") and stored[1:] == (None, None)
