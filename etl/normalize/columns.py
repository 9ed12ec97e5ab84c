"""The warehouse row layout the normalizer produces: table -> column order of each row tuple."""

from __future__ import annotations

from typing import Final

# The order of values in every row tuple. This is a contract with the loader (it zips rows with
# these names) and with BI users (the names are the warehouse columns); append, never reorder.
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

# Column kinds: what a value must be to go into the column. Anything else is a "misfit" and is
# kept in the row's `extra` under its source key instead (nothing is lost, nothing crashes).
TEXT: Final = 0
INT: Final = 1
BOOL: Final = 2
TIME: Final = 3
JSON: Final = 4

# Columns whose values are JSON documents (the loader serialises them).
JSON_COLUMNS: Final[dict[str, frozenset[str]]] = {
    "conversations": frozenset({"user_information", "extra", "raw"}),
    "messages": frozenset(
        {
            "labels",
            "important_words",
            "human_agent",
            "matched_filter",
            "sent_filter_values",
            "extra",
        }
    ),
    "content": frozenset({"json", "extra"}),
    "buttons": frozenset({"attributes", "extra"}),
    "intent_analysis": frozenset({"extra"}),
    "intents": frozenset({"extra"}),
    "actions": frozenset({"extra"}),
}


def index(table: str) -> dict[str, int]:
    """Column name -> position in the row tuple of `table`."""
    return {name: i for i, name in enumerate(TABLE_COLUMNS[table])}
