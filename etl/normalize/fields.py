"""Where each known key of an exported object goes: its column in the row, and as what kind.

A `FieldMap` copies an object's known keys into a row and hands back the rest (unknown keys
and "misfits", values of the wrong type for their column), which the row keeps in `extra`:
nothing crashes, nothing is lost. Null and absent mean the same for a known key.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from etl.normalize.columns import TABLE_COLUMNS, Kind, index
from etl.normalize.errors import shown

# BIGINT bounds: a larger integer would make the database refuse the whole batch.
INT_MIN: Final = -(2**63)
INT_MAX: Final = 2**63 - 1

_fromisoformat = datetime.fromisoformat


class BadField(Exception):
    """A field that makes the conversation unloadable; `path` grows as it bubbles up."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(problem)
        self.path = path
        self.problem = problem


def parse_time(value: Any, key: str) -> datetime:
    """An ISO-8601 timestamp with a UTC offset, as an aware datetime in UTC."""
    if value.__class__ is not str:
        raise BadField(key, f"expected an ISO-8601 timestamp string, got {type(value).__name__}")
    try:
        parsed = _fromisoformat(value)
        if parsed.tzinfo is not None:
            return parsed.astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: year 1 or 9999 shifted out of range
        raise BadField(key, f"unparseable timestamp {shown(value)}") from None
    # The API always sends an offset; guessing a zone would silently shift times.
    raise BadField(key, f"timestamp {shown(value)} has no UTC offset")


# How copy_into treats a key, as small ints compared in its loop: the key's column kind, or
# one of two keys without a column (handled by the caller; the "type" tag).
_TEXT, _INT, _BOOL, _TIME, _JSON, _NESTED, _TAG = range(7)
_STEP: Final = {
    Kind.TEXT: _TEXT,
    Kind.INT: _INT,
    Kind.BOOL: _BOOL,
    Kind.TIME: _TIME,
    Kind.JSON: _JSON,
}


class FieldMap:
    """The known keys of one kind of exported object, and the columns of `table` they fill.

    `columns` maps a source key to (column, kind); `nested` are known keys the caller handles
    itself (sub-objects and lists); `tag` is the value the object's "type" key documents (it
    is dropped when it has that value, and kept in `extra` otherwise).
    """

    def __init__(
        self,
        table: str,
        columns: Mapping[str, tuple[str, Kind]],
        *,
        nested: tuple[str, ...] = (),
        tag: str | None = None,
    ) -> None:
        if tag is not None and "type" in columns:
            raise ValueError(f"{table}: 'type' is either a column or a tag")
        position = index(table)
        self.table = table
        self.tag = tag
        # source key -> (row position, step)
        self._steps: dict[str, tuple[int, int]] = {
            key: (position[column], _STEP[kind]) for key, (column, kind) in columns.items()
        }
        self._steps.update((key, (-1, _NESTED)) for key in nested)
        if tag is not None:
            self._steps["type"] = (-1, _TAG)

    def copy_into(self, obj: Mapping[str, Any], row: list[Any]) -> dict[str, Any] | None:
        """Copy the known keys of `obj` into `row`; return the rest, or None when there is none.

        The rest is the unknown keys and the "misfits" (values of a type their column does not
        take), under their source keys. Null and absent mean the same for a known key.
        """
        rest: dict[str, Any] | None = None
        steps = self._steps
        for key, value in obj.items():
            found = steps.get(key)
            if found is not None:
                if value is None:
                    continue
                at, step = found
                cls = value.__class__
                if step == _TEXT:
                    if cls is str:
                        row[at] = value
                        continue
                elif step == _TIME:  # a timestamp is never a misfit: a bad one is refused
                    row[at] = parse_time(value, key)
                    continue
                elif step == _INT:
                    if cls is int and INT_MIN <= value <= INT_MAX:
                        row[at] = value
                        continue
                elif step == _BOOL:
                    if cls is bool:
                        row[at] = value
                        continue
                elif step == _JSON:
                    row[at] = value
                    continue
                elif step == _NESTED or value == self.tag:
                    continue
            if rest is None:
                rest = {}
            rest[key] = value
        return rest


# Message and content types with a documented shape; any other keeps its fields in `extra`.
KNOWN_MESSAGE_TYPES: Final = frozenset({"question", "answer"})
KNOWN_CONTENT_TYPES: Final = frozenset({"text", "image", "video", "json", "link", "ssml"})

TEXT, INT, BOOL, TIME, JSON = Kind.TEXT, Kind.INT, Kind.BOOL, Kind.TIME, Kind.JSON

CONVERSATION = FieldMap(
    "conversations",
    {
        "reference": ("reference", TEXT),
        "environment": ("environment", TEXT),
        "reviewed": ("reviewed", BOOL),
        "quality_label": ("quality_label", TEXT),
        "authentication_identifier": ("authentication_identifier", TEXT),
        "user_information": ("user_information", JSON),
    },
    nested=("id", "messages", "time"),
    tag="conversation",
)
CONVERSATION_TIME = FieldMap(
    "conversations",
    {"created": ("created_at", TIME), "last_message_created": ("last_message_at", TIME)},
)
_MESSAGE_COMMON: Final = {
    "time": ("time", TIME),
    "type": ("type", TEXT),
    "is_human_chat": ("is_human_chat", BOOL),
    "session_id": ("session_id", TEXT),
}
# An undocumented message type keeps everything but the common fields in `extra`.
OTHER_MESSAGE = FieldMap("messages", _MESSAGE_COMMON, nested=("id",))
# Question and answer fields are mapped for both types: a field on the "wrong" type still has
# one meaning, and a column is more useful than `extra`.
MESSAGE = FieldMap(
    "messages",
    {
        **_MESSAGE_COMMON,
        "source_url": ("source_url", TEXT),
        "device": ("device", TEXT),
        "system_action_trigger": ("system_action_trigger", TEXT),
        "human_agent": ("human_agent", JSON),
        "matched_filter": ("matched_filter", JSON),
        "sent_filter_values": ("sent_filter_values", JSON),
    },
    nested=("id", "question", "intents", "actions", "content", "button_clicked"),
)
QUESTION = FieldMap(
    "messages",
    {
        "input": ("input", TEXT),
        "predicted_language": ("predicted_language", TEXT),
        "sentiment": ("sentiment", TEXT),
        "labels": ("labels", JSON),
        "important_words": ("important_words", JSON),
    },
    nested=("analysis",),
    tag="question_analysis",
)
CLICKED_BUTTON = FieldMap(
    "messages",
    {
        "id": ("clicked_button_id", INT),
        "button_type": ("clicked_button_type", TEXT),
        "text": ("clicked_button_text", TEXT),
        "url": ("clicked_button_url", TEXT),
        "hidden": ("clicked_button_hidden", BOOL),
        "source_url": ("clicked_button_source_url", TEXT),
    },
    tag="button",
)
_CONTENT_COMMON: Final = {"type": ("type", TEXT), "time": ("time", TIME)}
OTHER_CONTENT = FieldMap("content", _CONTENT_COMMON)
CONTENT = FieldMap(
    "content",
    {
        **_CONTENT_COMMON,
        "text": ("text", TEXT),
        "url": ("url", TEXT),
        "video_type": ("video_type", TEXT),
        "video_fullscreen": ("video_fullscreen", BOOL),
        "ssml": ("ssml", TEXT),
        "json": ("json", JSON),
    },
    nested=("buttons",),
)
BUTTON = FieldMap(
    "buttons",
    {
        "id": ("button_id", INT),
        "button_type": ("button_type", TEXT),
        "text": ("text", TEXT),
        "url": ("url", TEXT),
        "hidden": ("hidden", BOOL),
        "attributes": ("attributes", JSON),
    },
    tag="button",
)
ANALYSIS = FieldMap(
    "intent_analysis",
    {
        "processed": ("processed", TEXT),
        "translated": ("translated", TEXT),
        "winner": ("winner", BOOL),
    },
    nested=("intent",),
)
INTENT = FieldMap(
    "intents",
    {"id": ("id", INT), "title": ("title", TEXT), "inherit_skill": ("inherit_skill", BOOL)},
    tag="intent",
)
ACTION = FieldMap(
    "actions",
    {
        "id": ("id", INT),
        "action_type": ("action_type", TEXT),
        "language": ("language", TEXT),
        "transfer_to_human": ("transfer_to_human", BOOL),
    },
    tag="action",
)

WIDTH: Final = {table: len(columns) for table, columns in TABLE_COLUMNS.items()}
