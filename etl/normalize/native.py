"""Hands the compiled row builder (etl/normalize/_cbuild.c) its field maps and row layout."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from etl.normalize.columns import TABLE_COLUMNS
from etl.normalize.fields import (
    ACTION_FIELDS,
    ANALYSIS_FIELDS,
    BUTTON_FIELDS,
    CLICK_FIELDS,
    CONTENT_FIELDS,
    CONTENT_OTHER_FIELDS,
    CONV_FIELDS,
    CONV_TIME_FIELDS,
    INTENT_FIELDS,
    KNOWN_CONTENT_TYPES,
    KNOWN_MESSAGE_TYPES,
    MESSAGE_COLUMN,
    MSG_FIELDS,
    MSG_OTHER_FIELDS,
    QUESTION_FIELDS,
)
from etl.normalize.project import COMPILED

Builder = Callable[[Any, int, list[Any]], Any]


def _layout() -> dict[str, int]:
    """The row positions core.py's builder writes by name, for the compiled one."""
    m = MESSAGE_COLUMN
    # The builder writes an intent's id and title, and an action's four columns, side by side.
    for prefix in ("predicted_intent_", "came_from_intent_"):
        assert m[prefix + "title"] == m[prefix + "id"] + 1
    for prefix in ("displayed_action_", "came_from_action_"):
        assert [m[prefix + c] for c in ("type", "language", "transfer_to_human")] == [
            m[prefix + "id"] + k for k in (1, 2, 3)
        ]
    analysis = TABLE_COLUMNS["intent_analysis"]
    assert analysis[analysis.index("intent_id") :][:3] == (
        "intent_id",
        "intent_title",
        "intent_inherit_skill",
    )
    conversations = TABLE_COLUMNS["conversations"]
    sizes = {
        "n_conv": "conversations",
        "n_msg": "messages",
        "n_content": "content",
        "n_button": "buttons",
        "n_analysis": "intent_analysis",
        "n_intent": "intents",
        "n_action": "actions",
    }
    return {
        **{name: len(TABLE_COLUMNS[table]) for name, table in sizes.items()},
        "msg_time_at": m["time"],
        "predicted_intent_at": m["predicted_intent_id"],
        "came_from_intent_at": m["came_from_intent_id"],
        "displayed_action_at": m["displayed_action_id"],
        "came_from_action_at": m["came_from_action_id"],
        "analysis_intent_at": analysis.index("intent_id"),
        "conv_count_at": conversations.index("message_count"),
        "conv_extra_at": conversations.index("extra"),
    }


def compiled_builder() -> Builder | None:
    """The compiled builder, configured; None when the extension is not built (or disabled)."""
    if COMPILED is None:
        return None
    from etl.normalize import _cproject

    _cproject.configure_build(
        {
            "conv_fields": CONV_FIELDS,
            "conv_time_fields": CONV_TIME_FIELDS,
            "msg_fields": MSG_FIELDS,
            "msg_other_fields": MSG_OTHER_FIELDS,
            "question_fields": QUESTION_FIELDS,
            "click_fields": CLICK_FIELDS,
            "content_fields": CONTENT_FIELDS,
            "content_other_fields": CONTENT_OTHER_FIELDS,
            "button_fields": BUTTON_FIELDS,
            "analysis_fields": ANALYSIS_FIELDS,
            "intent_fields": INTENT_FIELDS,
            "action_fields": ACTION_FIELDS,
            "known_message": KNOWN_MESSAGE_TYPES,
            "known_content": KNOWN_CONTENT_TYPES,
            **_layout(),
        }
    )
    return _cproject.build
