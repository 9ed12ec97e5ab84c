"""The warehouse row layout the normalizer produces: table -> column order of each row tuple."""

from __future__ import annotations

from enum import Enum
from typing import Final


class Kind(Enum):
    """What a value must be to go into a column; anything else is kept in the row's `extra`."""

    TEXT = "text"
    INT = "int"  # a 64-bit integer (bool is not one)
    BOOL = "bool"
    TIME = "time"  # an ISO-8601 timestamp with an offset, stored as UTC
    JSON = "json"  # any JSON value, stored as a JSON document


# The order of values in every row tuple, a contract between the normalizer and the loaders
# (they name the columns in this order); the names are the warehouse columns BI users see.
# `extra` stays last: the normalizer writes it as row[-1].
TABLE_COLUMNS: Final[dict[str, tuple[str, ...]]] = {
    "conversations": (
        "id",
        "reference",
        "environment",
        "created_at",
        "last_message_at",
        "reviewed",
        "quality_label",
        "authentication_identifier",
        "user_information",
        "message_count",
        "extra",
        "raw",
    ),
    "messages": (
        "id",
        "conversation_id",
        "position",
        "time",
        "type",
        "is_human_chat",
        "session_id",
        # question
        "input",
        "predicted_language",
        "sentiment",
        "labels",
        "important_words",
        "source_url",
        "device",
        "predicted_intent_id",
        "predicted_intent_title",
        "predicted_intent_inherit_skill",
        # answer
        "displayed_action_id",
        "displayed_action_type",
        "displayed_action_language",
        "displayed_action_transfer_to_human",
        "came_from_action_id",
        "came_from_action_type",
        "came_from_action_language",
        "came_from_action_transfer_to_human",
        "came_from_intent_id",
        "came_from_intent_title",
        "came_from_intent_inherit_skill",
        "system_action_trigger",
        "human_agent",
        "matched_filter",
        "sent_filter_values",
        # clicked button
        "clicked_button_id",
        "clicked_button_type",
        "clicked_button_text",
        "clicked_button_url",
        "clicked_button_hidden",
        "clicked_button_source_url",
        "extra",
    ),
    "content": (
        "message_id",
        "position",
        "conversation_id",
        "type",
        "time",
        "text",
        "url",
        "video_type",
        "video_fullscreen",
        "ssml",
        "json",
        "extra",
    ),
    "buttons": (
        "message_id",
        "content_position",
        "position",
        "conversation_id",
        "button_id",
        "button_type",
        "text",
        "url",
        "hidden",
        "attributes",
        "extra",
    ),
    "intent_analysis": (
        "message_id",
        "position",
        "conversation_id",
        "processed",
        "translated",
        "winner",
        "intent_id",
        "intent_title",
        "intent_inherit_skill",
        "extra",
    ),
    "intents": ("id", "title", "inherit_skill", "last_seen_at", "extra"),
    "actions": ("id", "action_type", "language", "transfer_to_human", "last_seen_at", "extra"),
}

# The columns whose values are datetimes (aware, UTC); every other value is JSON's own.
TIME_COLUMNS: Final = frozenset({"created_at", "last_message_at", "time", "last_seen_at"})

# The tables a conversation owns rows in (replaced with it), and the dimension tables its
# messages refer to (upserted: latest seen wins).
CHILD_TABLES: Final = ("messages", "content", "buttons", "intent_analysis")
DIMENSION_TABLES: Final = ("intents", "actions")


def index(table: str) -> dict[str, int]:
    """Column name -> position in the row tuple of `table`."""
    return {name: i for i, name in enumerate(TABLE_COLUMNS[table])}
