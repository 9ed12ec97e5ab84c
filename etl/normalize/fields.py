"""Where each known key of an exported object goes: its column in the row, and as what kind."""

from __future__ import annotations

from etl.normalize.columns import BOOL, INT, JSON, TABLE_COLUMNS, TEXT, TIME, index
from etl.normalize.project import SKIP, TAG, Fields

# Message and content types with a documented shape; any other keeps its fields in `extra`.
KNOWN_MESSAGE_TYPES = frozenset({"question", "answer"})
KNOWN_CONTENT_TYPES = frozenset({"text", "image", "video", "json", "link", "ssml"})

# Column name -> row position, per table (TABLE_COLUMNS lists the seven tables in this order).
(
    _CONVERSATION_COLUMN,
    MESSAGE_COLUMN,
    _CONTENT_COLUMN,
    _BUTTON_COLUMN,
    _ANALYSIS_COLUMN,
    _INTENT_COLUMN,
    _ACTION_COLUMN,
) = (index(t) for t in TABLE_COLUMNS)


def _fields(table: dict[str, int], spec: dict[str, tuple[str | None, int]]) -> Fields:
    """{source key: (column, kind)} -> {source key: (row position, kind)} for `table`."""
    return {key: (table[column] if column else -1, kind) for key, (column, kind) in spec.items()}


CONV_FIELDS = _fields(
    _CONVERSATION_COLUMN,
    {
        "type": (None, TAG),
        "id": (None, SKIP),
        "messages": (None, SKIP),
        "time": (None, SKIP),
        "reference": ("reference", TEXT),
        "environment": ("environment", TEXT),
        "reviewed": ("reviewed", BOOL),
        "quality_label": ("quality_label", TEXT),
        "authentication_identifier": ("authentication_identifier", TEXT),
        "user_information": ("user_information", JSON),
    },
)
CONV_TIME_FIELDS = _fields(
    _CONVERSATION_COLUMN,
    {"created": ("created_at", TIME), "last_message_created": ("last_message_at", TIME)},
)
_MSG_COMMON: dict[str, tuple[str | None, int]] = {
    "id": (None, SKIP),
    "time": ("time", TIME),
    "type": ("type", TEXT),
    "is_human_chat": ("is_human_chat", BOOL),
    "session_id": ("session_id", TEXT),
}
# An undocumented message type keeps everything but the common fields in `extra`.
MSG_OTHER_FIELDS = _fields(MESSAGE_COLUMN, _MSG_COMMON)
# Question and answer fields are mapped for both types: a field on the "wrong" type still has
# one meaning, and a column is more useful than `extra`.
MSG_FIELDS = _fields(
    MESSAGE_COLUMN,
    {
        **_MSG_COMMON,
        "question": (None, SKIP),
        "intents": (None, SKIP),
        "actions": (None, SKIP),
        "content": (None, SKIP),
        "button_clicked": (None, SKIP),
        "source_url": ("source_url", TEXT),
        "device": ("device", TEXT),
        "system_action_trigger": ("system_action_trigger", TEXT),
        "human_agent": ("human_agent", JSON),
        "matched_filter": ("matched_filter", JSON),
        "sent_filter_values": ("sent_filter_values", JSON),
    },
)
QUESTION_FIELDS = _fields(
    MESSAGE_COLUMN,
    {
        "type": (None, TAG),
        "analysis": (None, SKIP),
        "input": ("input", TEXT),
        "predicted_language": ("predicted_language", TEXT),
        "sentiment": ("sentiment", TEXT),
        "labels": ("labels", JSON),
        "important_words": ("important_words", JSON),
    },
)
CLICK_FIELDS = _fields(
    MESSAGE_COLUMN,
    {
        "type": (None, TAG),
        "id": ("clicked_button_id", INT),
        "button_type": ("clicked_button_type", TEXT),
        "text": ("clicked_button_text", TEXT),
        "url": ("clicked_button_url", TEXT),
        "hidden": ("clicked_button_hidden", BOOL),
        "source_url": ("clicked_button_source_url", TEXT),
    },
)
_CONTENT_COMMON: dict[str, tuple[str | None, int]] = {
    "type": ("type", TEXT),
    "time": ("time", TIME),
}
CONTENT_OTHER_FIELDS = _fields(_CONTENT_COLUMN, _CONTENT_COMMON)
CONTENT_FIELDS = _fields(
    _CONTENT_COLUMN,
    {
        **_CONTENT_COMMON,
        "buttons": (None, SKIP),
        "text": ("text", TEXT),
        "url": ("url", TEXT),
        "video_type": ("video_type", TEXT),
        "video_fullscreen": ("video_fullscreen", BOOL),
        "ssml": ("ssml", TEXT),
        "json": ("json", JSON),
    },
)
BUTTON_FIELDS = _fields(
    _BUTTON_COLUMN,
    {
        "type": (None, TAG),
        "id": ("button_id", INT),
        "button_type": ("button_type", TEXT),
        "text": ("text", TEXT),
        "url": ("url", TEXT),
        "hidden": ("hidden", BOOL),
        "attributes": ("attributes", JSON),
    },
)
ANALYSIS_FIELDS = _fields(
    _ANALYSIS_COLUMN,
    {
        "intent": (None, SKIP),
        "processed": ("processed", TEXT),
        "translated": ("translated", TEXT),
        "winner": ("winner", BOOL),
    },
)
INTENT_FIELDS = _fields(
    _INTENT_COLUMN,
    {
        "type": (None, TAG),
        "id": ("id", INT),
        "title": ("title", TEXT),
        "inherit_skill": ("inherit_skill", BOOL),
    },
)
ACTION_FIELDS = _fields(
    _ACTION_COLUMN,
    {
        "type": (None, TAG),
        "id": ("id", INT),
        "action_type": ("action_type", TEXT),
        "language": ("language", TEXT),
        "transfer_to_human": ("transfer_to_human", BOOL),
    },
)
