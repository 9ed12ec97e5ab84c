"""Turns one exported conversation into row tuples for the seven warehouse tables (pure, no I/O)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from etl.normalize.clean import clean_row
from etl.normalize.columns import TABLE_COLUMNS, index
from etl.normalize.digest import TOO_DEEP, Digest, content_digest
from etl.normalize.errors import NormalizeError, shown
from etl.normalize.fields import (
    ACTION,
    ANALYSIS,
    BUTTON,
    CLICKED_BUTTON,
    CONTENT,
    CONVERSATION,
    CONVERSATION_TIME,
    INT_MAX,
    INT_MIN,
    INTENT,
    KNOWN_CONTENT_TYPES,
    KNOWN_MESSAGE_TYPES,
    MESSAGE,
    OTHER_CONTENT,
    OTHER_MESSAGE,
    QUESTION,
    WIDTH,
    BadField,
    FieldMap,
)
from etl.normalize.references import latest_references

Row = tuple[Any, ...]

_EXTRA: Final = {table: columns.index("extra") for table, columns in TABLE_COLUMNS.items()}
_MESSAGE: Final = index("messages")
_ANALYSIS_INTENT: Final = index("intent_analysis")["intent_id"]  # then title, inherit_skill
_COUNT_AT: Final = index("conversations")["message_count"]
_RAW_AT: Final = index("conversations")["raw"]
# Where a message's intent references go (id, then title, inherit_skill), and its action
# references (id, then type, language, transfer_to_human), by the name the export gives the
# reference.
_INTENT_AT: Final = {
    "predicted": _MESSAGE["predicted_intent_id"],
    "came_from": _MESSAGE["came_from_intent_id"],
}
_ACTION_AT: Final = {
    "displayed": _MESSAGE["displayed_action_id"],
    "came_from": _MESSAGE["came_from_action_id"],
}


def _check_layout() -> None:
    """The builder writes an intent's and an action's columns side by side: say so at import."""
    m, a = TABLE_COLUMNS["messages"], TABLE_COLUMNS["intent_analysis"]
    for at in _INTENT_AT.values():
        assert m[at + 1 : at + 3] == (
            m[at].replace("_id", "_title"),
            m[at].replace("_id", "_inherit_skill"),
        )
    for at in _ACTION_AT.values():
        prefix = m[at].removesuffix("id")
        assert m[at + 1 : at + 4] == tuple(
            prefix + c for c in ("type", "language", "transfer_to_human")
        )
    assert a[_ANALYSIS_INTENT : _ANALYSIS_INTENT + 3] == (
        "intent_id",
        "intent_title",
        "intent_inherit_skill",
    )


_check_layout()


@dataclass(slots=True)
class NormalizedConversation:
    """One conversation as rows: `rows[table]` holds tuples in `TABLE_COLUMNS[table]` order;
    `intents` and `actions` its references, to be folded per id (normalize.references)."""

    id: int
    content_hash: str
    rows: dict[str, list[Row]]
    # Every value is plain JSON that orjson encodes exactly (see digest.py): a loader may use
    # orjson for its JSON columns.
    plain: bool = False
    # Where it was in its stream and its JSON text: kept only when a loader may still have to
    # quarantine it (pipeline.on_bad_conversation = "quarantine").
    position: int | None = None
    body: bytes | str | None = None


def _is_object(value: Any) -> bool:
    return value.__class__ is dict or isinstance(value, Mapping)


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
    obj: Mapping[str, Any], fields: FieldMap, seen_at: datetime | None, out: list[Row]
) -> tuple[list[Any], dict[str, Any] | None]:
    """Copy an intent or action; emit its dimension row when it has an id.

    Returns the copied values and the rest of the object (unknown keys, misfits), which the
    referring row keeps in its `extra`: the values of each occurrence stay with it, as the
    same id may carry other values in another message. The dimension row gets them too (until
    `latest_references` drops the rows that another one with the same values outdates).
    """
    values: list[Any] = [None] * WIDTH[fields.table]
    rest = fields.copy_into(obj, values)
    if values[0] is not None:
        values[-2] = seen_at
        values[-1] = _extra(rest)
        out.append(tuple(values))
    return values, rest


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
        row: list[Any] = [None] * WIDTH["messages"]
        row[0] = mid
        row[1] = self.cid
        row[2] = position
        mtype = msg.get("type")
        if mtype.__class__ is not str or mtype not in KNOWN_MESSAGE_TYPES:
            row[-1] = _extra(OTHER_MESSAGE.copy_into(msg, row))
            self.messages.append(tuple(row))
            return
        rest = MESSAGE.copy_into(msg, row)
        seen_at: datetime | None = row[3]
        question = msg.get("question")
        if question is not None:
            rest = self._question(question, row, mid, seen_at, rest)
        intents = msg.get("intents")
        if intents is not None:
            rest = self._references(intents, "intents", row, seen_at, rest)
        actions = msg.get("actions")
        if actions is not None:
            rest = self._references(actions, "actions", row, seen_at, rest)
        clicked = msg.get("button_clicked")
        if clicked is not None:
            left = CLICKED_BUTTON.copy_into(clicked, row) if _is_object(clicked) else clicked
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

    def _references(
        self,
        refs: Any,
        key: str,
        row: list[Any],
        seen_at: datetime | None,
        rest: dict[str, Any] | None,
    ) -> dict[str, Any] | None:
        """A message's `intents` or `actions`: two known references plus unknown keys."""
        if not _is_object(refs):
            return _nest(rest, key, refs)
        positions = _INTENT_AT if key == "intents" else _ACTION_AT
        fill = self._intent if key == "intents" else self._action
        sub: dict[str, Any] | None = None
        present = 0
        for name, at in positions.items():  # the documented order
            ref = refs.get(name)
            if ref is None:
                present += name in refs
                continue
            present += 1
            left = fill(ref, row, at, seen_at) if _is_object(ref) else ref
            if left is not None:
                sub = _nest(sub, name, left)
        if len(refs) > present:
            for name, value in refs.items():
                if name not in positions:
                    sub = _nest(sub, name, value)
        return rest if sub is None else _nest(rest, key, sub)

    def _intent(
        self, obj: Mapping[str, Any], row: list[Any], at: int, seen_at: datetime | None
    ) -> dict[str, Any] | None:
        """Fill a message's intent columns; return what its `extra` must keep."""
        values, rest = _dimension(obj, INTENT, seen_at, self.intents)
        row[at : at + 3] = values[0:3]
        return rest

    def _action(
        self, obj: Mapping[str, Any], row: list[Any], at: int, seen_at: datetime | None
    ) -> dict[str, Any] | None:
        values, rest = _dimension(obj, ACTION, seen_at, self.actions)
        row[at : at + 4] = values[0:4]
        return rest

    def _question(
        self,
        question: Any,
        row: list[Any],
        mid: int,
        seen_at: datetime | None,
        rest: dict[str, Any] | None,
    ) -> dict[str, Any] | None:
        if not _is_object(question):
            return _nest(rest, "question", question)
        left = QUESTION.copy_into(question, row)
        analysis = question.get("analysis")
        if analysis is not None:
            if isinstance(analysis, list):
                for at, item in enumerate(analysis):
                    self._analysis(item, mid, at, seen_at)
            else:
                left = _nest(left, "analysis", analysis)
        return rest if left is None else _nest(rest, "question", left)

    def _analysis(self, item: Any, mid: int, position: int, seen_at: datetime | None) -> None:
        row: list[Any] = [None] * WIDTH["intent_analysis"]
        row[0] = mid
        row[1] = position
        row[2] = self.cid
        if not _is_object(item):
            row[-1] = {"_value": item}
        else:
            rest = ANALYSIS.copy_into(item, row)
            intent = item.get("intent")
            if intent is not None:
                if _is_object(intent):
                    values, left = _dimension(intent, INTENT, seen_at, self.intents)
                    row[_ANALYSIS_INTENT : _ANALYSIS_INTENT + 3] = values[0:3]
                else:
                    left = intent
                if left is not None:
                    rest = _nest(rest, "intent", left)
            row[-1] = _extra(rest)
        self.analysis.append(tuple(row))

    def _content(self, item: Any, mid: int, position: int) -> None:
        row: list[Any] = [None] * WIDTH["content"]
        row[0] = mid
        row[1] = position
        row[2] = self.cid
        if not _is_object(item):
            row[-1] = {"_value": item}
            self.content.append(tuple(row))
            return
        ctype = item.get("type")
        if ctype.__class__ is not str or ctype not in KNOWN_CONTENT_TYPES:
            row[-1] = _extra(OTHER_CONTENT.copy_into(item, row))
            self.content.append(tuple(row))
            return
        rest = CONTENT.copy_into(item, row)
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
        row: list[Any] = [None] * WIDTH["buttons"]
        row[0] = mid
        row[1] = content_position
        row[2] = position
        row[3] = self.cid
        if _is_object(item):
            row[-1] = _extra(BUTTON.copy_into(item, row))
        else:
            row[-1] = {"_value": item}
        self.buttons.append(tuple(row))


def _build(conv: Mapping[str, Any], cid: int, messages: list[Any]) -> dict[str, list[Row]]:
    """The seven tables' rows of one conversation (`raw` not filled in)."""
    builder = _Builder(cid)
    seen: set[int] = set()
    path = ""
    try:
        row: list[Any] = [None] * WIDTH["conversations"]
        row[0] = cid
        rest = CONVERSATION.copy_into(conv, row)
        times = conv.get("time")
        if times is not None:
            path = "time."
            left = CONVERSATION_TIME.copy_into(times, row) if _is_object(times) else times
            if left is not None:
                rest = _nest(rest, "time", left)
        for position, msg in enumerate(messages):
            path = f"messages[{position}]."
            mid = msg.get("id") if _is_object(msg) else None
            if mid.__class__ is not int:
                raise BadField("id", f"message id must be an integer, got {shown(mid)}")
            if not INT_MIN <= mid <= INT_MAX:
                raise BadField(
                    "id",
                    f"message id {shown(mid)} is out of range for bigint (a 64-bit signed integer), "
                    "the type of messages.id",
                )
            if mid in seen:
                raise BadField("id", f"message id {mid} appears twice in the conversation")
            seen.add(mid)
            builder.message(msg, position, mid)
    except BadField as exc:
        raise NormalizeError(exc.problem, conversation_id=cid, field=path + exc.path) from None
    row[_COUNT_AT] = len(messages)
    row[_EXTRA["conversations"]] = _extra(rest)
    return {
        "conversations": [tuple(row)],
        "messages": builder.messages,
        "content": builder.content,
        "buttons": builder.buttons,
        "intent_analysis": builder.analysis,
        "intents": latest_references(builder.intents),
        "actions": latest_references(builder.actions),
    }


def normalize_conversation(
    conv: Mapping[str, Any], *, keep_raw: bool = False, digest: Digest | None = None
) -> NormalizedConversation:
    """Split one exported conversation into rows; raise NormalizeError if it is malformed.

    `digest` is `content_digest(conv)` when the caller has it already.
    """
    if digest is None:
        digest = content_digest(conv)
    cid = digest.id
    rows = _build(conv, cid, conv["messages"])
    if keep_raw:
        raw = conv if isinstance(conv, dict) else dict(conv)
        (conversation,) = rows["conversations"]
        rows["conversations"] = [(*conversation[:_RAW_AT], raw, *conversation[_RAW_AT + 1 :])]
    if digest.needs_cleaning:
        try:
            for table, table_rows in rows.items():
                columns, extra_at = TABLE_COLUMNS[table], _EXTRA[table]
                table_rows[:] = [clean_row(r, columns, extra_at) for r in table_rows]
        except RecursionError:
            raise NormalizeError(TOO_DEEP, conversation_id=cid) from None
    return NormalizedConversation(cid, digest.content_hash, rows, digest.plain_rows)
