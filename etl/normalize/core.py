"""Turns one exported conversation into row tuples for the seven warehouse tables (pure, no I/O)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from etl.normalize.clean import clean_row
from etl.normalize.columns import TABLE_COLUMNS
from etl.normalize.digest import TOO_DEEP, Digest, content_digest
from etl.normalize.errors import NormalizeError
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
from etl.normalize.native import compiled_builder
from etl.normalize.project import (
    INT_MAX,
    INT_MIN,
    BadField,
    Fields,
    project,
)

Row = tuple[Any, ...]


_N = {table: len(columns) for table, columns in TABLE_COLUMNS.items()}
_EXTRA = {table: columns.index("extra") for table, columns in TABLE_COLUMNS.items()}


@dataclass(slots=True)
class NormalizedConversation:
    """One conversation as rows: `rows[table]` holds tuples in `TABLE_COLUMNS[table]` order."""

    id: int
    content_hash: str
    rows: dict[str, list[Row]]
    # Every value is plain JSON orjson encodes exactly (see _digest): JSON columns may use it.
    plain: bool = False


def _extra(rest: dict[str, Any] | None) -> dict[str, Any] | None:
    """The row's `extra`: source keys starting with "_" get one more, as "_..." keys are ours."""
    if rest is None or not any(key[:1] == "_" for key in rest):
        return rest
    return {("_" + key if key[:1] == "_" else key): value for key, value in rest.items()}


def _nest(rest: dict[str, Any] | None, key: str, sub: Any) -> dict[str, Any]:
    if rest is None:
        rest = {}
    rest[key] = sub
    return rest


def _dimension(
    obj: Any, fields: Fields, table: str, tag: str, seen_at: datetime | None, out: list[Row]
) -> tuple[list[Any], dict[str, Any] | None]:
    """Project an intent/action; emit its dimension row when it has an id.

    Returns the projected values and what the parent row must keep in its `extra`: nothing when
    the dimension row was emitted (its own `extra` holds the rest), else the remainder.
    """
    values: list[Any] = [None] * _N[table]
    rest = project(obj, fields, values, tag)
    if values[0] is not None:
        values[-2] = seen_at
        values[-1] = _extra(rest)
        out.append(tuple(values))
        return values, None
    return values, rest


def _intent_into(
    parent: list[Any],
    obj: Mapping[str, Any],
    id_at: int,
    title_at: int,
    seen_at: datetime | None,
    out: list[Row],
) -> dict[str, Any] | None:
    """Fill a parent's intent id/title columns; return what the parent's extra must keep."""
    values, rest = _dimension(obj, INTENT_FIELDS, "intents", "intent", seen_at, out)
    parent[id_at] = values[0]
    parent[title_at] = values[1]
    if values[0] is None and values[2] is not None:
        rest = _nest(rest, "inherit_skill", values[2])
    return rest


def _refs(
    obj: Any,
    known: tuple[str, str],
    row: list[Any],
    fill: Any,
    rest: dict[str, Any] | None,
    key: str,
) -> dict[str, Any] | None:
    """Handle `actions`/`intents`: two known references, in a fixed order, plus unknown keys."""
    if not (obj.__class__ is dict or isinstance(obj, Mapping)):
        return _nest(rest, key, obj)
    sub: dict[str, Any] | None = None
    present = 0
    for name in known:
        ref = obj.get(name)
        if ref is None:
            present += name in obj
            continue
        present += 1
        left = fill(row, name, ref) if (ref.__class__ is dict or isinstance(ref, Mapping)) else ref
        if left is not None:
            sub = _nest(sub, name, left)
    if len(obj) > present:
        for name, value in obj.items():
            if name not in known:
                sub = _nest(sub, name, value)
    return rest if sub is None else _nest(rest, key, sub)


_ACTION_AT = {
    "displayed": MESSAGE_COLUMN["displayed_action_id"],
    "came_from": MESSAGE_COLUMN["came_from_action_id"],
}
_INTENT_AT = {
    "predicted": (MESSAGE_COLUMN["predicted_intent_id"], MESSAGE_COLUMN["predicted_intent_title"]),
    "came_from": (MESSAGE_COLUMN["came_from_intent_id"], MESSAGE_COLUMN["came_from_intent_title"]),
}


class _Builder:
    """Accumulates the rows of one conversation."""

    __slots__ = ("actions", "analysis", "buttons", "cid", "content", "intents", "messages")

    def __init__(self, cid: int) -> None:
        self.cid = cid
        self.messages: list[Row] = []
        self.content: list[Row] = []
        self.buttons: list[Row] = []
        self.analysis: list[Row] = []
        self.intents: list[Row] = []
        self.actions: list[Row] = []

    def message(self, msg: Mapping[str, Any], position: int, mid: int) -> None:
        row: list[Any] = [None] * _N["messages"]
        row[0] = mid
        row[1] = self.cid
        row[2] = position
        mtype = msg.get("type")
        if mtype.__class__ is not str or mtype not in KNOWN_MESSAGE_TYPES:
            row[-1] = _extra(project(msg, MSG_OTHER_FIELDS, row))
            self.messages.append(tuple(row))
            return
        rest = project(msg, MSG_FIELDS, row)
        seen_at: datetime | None = row[3]
        question = msg.get("question")
        if question is not None:
            rest = self._question(question, row, mid, seen_at, rest)
        intents = msg.get("intents")
        if intents is not None:
            out = self.intents

            def fill_intent(
                row: list[Any], name: str, ref: Mapping[str, Any]
            ) -> dict[str, Any] | None:
                id_at, title_at = _INTENT_AT[name]
                return _intent_into(row, ref, id_at, title_at, seen_at, out)

            rest = _refs(intents, ("predicted", "came_from"), row, fill_intent, rest, "intents")
        actions = msg.get("actions")
        if actions is not None:
            out_actions = self.actions

            def fill_action(
                row: list[Any], name: str, ref: Mapping[str, Any]
            ) -> dict[str, Any] | None:
                values, left = _dimension(
                    ref, ACTION_FIELDS, "actions", "action", seen_at, out_actions
                )
                at = _ACTION_AT[name]
                row[at : at + 4] = values[0:4]
                return left

            rest = _refs(actions, ("displayed", "came_from"), row, fill_action, rest, "actions")
        clicked = msg.get("button_clicked")
        if clicked is not None:
            left = (
                project(clicked, CLICK_FIELDS, row, "button")
                if (clicked.__class__ is dict or isinstance(clicked, Mapping))
                else clicked
            )
            if left is not None:
                rest = _nest(rest, "button_clicked", left)
        content = msg.get("content")
        if content is not None:
            if isinstance(content, list):
                for at, item in enumerate(content):
                    try:
                        self._content(item, mid, at)
                    except BadField as exc:
                        exc.path = f"content[{at}].{exc.path}"
                        raise
            else:
                rest = _nest(rest, "content", content)
        row[-1] = _extra(rest)
        self.messages.append(tuple(row))

    def _question(
        self,
        question: Any,
        row: list[Any],
        mid: int,
        seen_at: datetime | None,
        rest: dict[str, Any] | None,
    ) -> dict[str, Any] | None:
        if not (question.__class__ is dict or isinstance(question, Mapping)):
            return _nest(rest, "question", question)
        left = project(question, QUESTION_FIELDS, row, "question_analysis")
        analysis = question.get("analysis")
        if analysis is not None:
            if isinstance(analysis, list):
                for at, item in enumerate(analysis):
                    self._analysis(item, mid, at, seen_at)
            else:
                left = _nest(left, "analysis", analysis)
        return rest if left is None else _nest(rest, "question", left)

    def _analysis(self, item: Any, mid: int, position: int, seen_at: datetime | None) -> None:
        row: list[Any] = [None] * _N["intent_analysis"]
        row[0] = mid
        row[1] = position
        row[2] = self.cid
        if not (item.__class__ is dict or isinstance(item, Mapping)):
            row[-1] = {"_value": item}
        else:
            rest = project(item, ANALYSIS_FIELDS, row)
            intent = item.get("intent")
            if intent is not None:
                if intent.__class__ is dict or isinstance(intent, Mapping):
                    values, left = _dimension(
                        intent, INTENT_FIELDS, "intents", "intent", seen_at, self.intents
                    )
                    row[6:9] = values[0:3]
                else:
                    left = intent
                if left is not None:
                    rest = _nest(rest, "intent", left)
            row[-1] = _extra(rest)
        self.analysis.append(tuple(row))

    def _content(self, item: Any, mid: int, position: int) -> None:
        row: list[Any] = [None] * _N["content"]
        row[0] = mid
        row[1] = position
        row[2] = self.cid
        if not (item.__class__ is dict or isinstance(item, Mapping)):
            row[-1] = {"_value": item}
            self.content.append(tuple(row))
            return
        ctype = item.get("type")
        if ctype.__class__ is not str or ctype not in KNOWN_CONTENT_TYPES:
            row[-1] = _extra(project(item, CONTENT_OTHER_FIELDS, row))
            self.content.append(tuple(row))
            return
        rest = project(item, CONTENT_FIELDS, row)
        buttons = item.get("buttons")
        if buttons is not None:
            if isinstance(buttons, list):
                for at, button in enumerate(buttons):
                    self._button(button, mid, position, at)
            else:
                rest = _nest(rest, "buttons", buttons)
        row[-1] = _extra(rest)
        self.content.append(tuple(row))

    def _button(self, item: Any, mid: int, content_position: int, position: int) -> None:
        row: list[Any] = [None] * _N["buttons"]
        row[0] = mid
        row[1] = content_position
        row[2] = position
        row[3] = self.cid
        if item.__class__ is dict or isinstance(item, Mapping):
            row[-1] = _extra(project(item, BUTTON_FIELDS, row, "button"))
        else:
            row[-1] = {"_value": item}
        self.buttons.append(tuple(row))


Built = tuple[Row, list[Row], list[Row], list[Row], list[Row], list[Row], list[Row]]


def build_rows_py(conv: Mapping[str, Any], cid: int, messages: list[Any]) -> Built:
    """The conversation row (without `raw`) and the six child tables' rows, in Python.

    The reference for the compiled builder (etl/normalize/_cbuild.c), which hands back to it
    whatever it does not handle itself, data errors included: so every NormalizeError is
    raised here, with its field path.
    """
    builder = _Builder(cid)
    seen: set[int] = set()
    path = ""
    try:
        row: list[Any] = [None] * _N["conversations"]
        row[0] = cid
        rest = project(conv, CONV_FIELDS, row, "conversation")
        times = conv.get("time")
        if times is not None:
            path = "time."
            left = (
                project(times, CONV_TIME_FIELDS, row)
                if (times.__class__ is dict or isinstance(times, Mapping))
                else times
            )
            if left is not None:
                rest = _nest(rest, "time", left)
        for position, msg in enumerate(messages):
            path = f"messages[{position}]."
            mid = msg.get("id") if (msg.__class__ is dict or isinstance(msg, Mapping)) else None
            if mid.__class__ is not int or not INT_MIN <= mid <= INT_MAX:
                raise BadField("id", f"message id must be an integer, got {mid!r}")
            if mid in seen:
                raise BadField("id", f"message id {mid} appears twice in the conversation")
            seen.add(mid)
            builder.message(msg, position, mid)
        path = ""
    except BadField as exc:
        raise NormalizeError(exc.problem, conversation_id=cid, field=path + exc.path) from None
    row[_COUNT_AT] = len(messages)
    row[_EXTRA["conversations"]] = _extra(rest)
    return (
        tuple(row),
        builder.messages,
        builder.content,
        builder.buttons,
        builder.analysis,
        builder.intents,
        builder.actions,
    )


_COUNT_AT: Final = TABLE_COLUMNS["conversations"].index("message_count")
_RAW_AT: Final = TABLE_COLUMNS["conversations"].index("raw")
_build: Final = compiled_builder()


def normalize_conversation(
    conv: Mapping[str, Any], *, keep_raw: bool = False, digest: Digest | None = None
) -> NormalizedConversation:
    """Split one exported conversation into rows; raise NormalizeError if it is malformed.

    `digest` is `content_digest(conv)` when the caller has it already.
    """
    if digest is None:
        digest = content_digest(conv)
    cid, content_hash, needs_cleaning = digest.id, digest.content_hash, digest.needs_cleaning
    messages: list[Any] = conv["messages"]
    built = None if _build is None else _build(conv, cid, messages)
    if built is None:
        built = build_rows_py(conv, cid, messages)
    conversation, message_rows, content, buttons, analysis, intents, actions = built
    if keep_raw:
        raw = conv if isinstance(conv, dict) else dict(conv)
        conversation = (*conversation[:_RAW_AT], raw, *conversation[_RAW_AT + 1 :])
    rows: dict[str, list[Row]] = {
        "conversations": [conversation],
        "messages": message_rows,
        "content": content,
        "buttons": buttons,
        "intent_analysis": analysis,
        "intents": intents,
        "actions": actions,
    }
    if needs_cleaning:
        try:
            for table, table_rows in rows.items():
                columns, extra_at = TABLE_COLUMNS[table], _EXTRA[table]
                table_rows[:] = [clean_row(r, columns, extra_at) for r in table_rows]
        except RecursionError:
            raise NormalizeError(TOO_DEEP, conversation_id=cid) from None
    return NormalizedConversation(cid, content_hash, rows, digest.plain and not needs_cleaning)


def iter_rows(
    conversations: Iterable[Mapping[str, Any]], *, keep_raw: bool = False
) -> Iterator[tuple[str, Row]]:
    """Yield `(table, row)` for every conversation, table by table (dlt-style resource form)."""
    for position, conv in enumerate(conversations):
        try:
            normalized = normalize_conversation(conv, keep_raw=keep_raw)
        except NormalizeError as exc:
            if exc.conversation_id is not None:
                raise
            raise exc.at_position(position) from None
        for table, table_rows in normalized.rows.items():
            for row in table_rows:
                yield table, row
