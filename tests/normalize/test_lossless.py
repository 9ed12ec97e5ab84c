"""Nothing is lost: the conversation can be rebuilt from its rows (columns + extra + _original)."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etl.normalize import TABLE_COLUMNS, NormalizedConversation, normalize_conversation

EXPORT = Path(__file__).parents[1] / "fixtures" / "seed-example-export.json"
KNOWN_MESSAGE = {"question", "answer"}
KNOWN_CONTENT = {"text", "image", "video", "json", "link", "ssml"}

# --- rebuilding a conversation from its rows -------------------------------------------------


def _restore(row: dict[str, Any]) -> dict[str, Any]:
    """Undo the NUL/surrogate rule and the "_" escaping; return the row's extra as exported."""
    extra = row.get("extra")
    if not extra:
        return {}
    extra = dict(extra)
    originals = extra.pop("_original", {})
    for column, escaped in originals.items():
        if column == "extra":
            extra = json.loads(escaped)
        else:
            row[column] = json.loads(escaped)
    if "_value" in extra:  # a list item that was not an object (reserved, so not escaped)
        row["_not_object"] = True
    return {(k[1:] if k.startswith("__") else k): v for k, v in extra.items()}


def _merge(target: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        if key in target and isinstance(target[key], dict) and isinstance(value, dict):
            _merge(target[key], value)
        else:
            # Only an empty container built from NULL columns may be replaced.
            assert _prune(target.get(key)) in (None, {}, []), f"{key!r} in a column and in extra"
            target[key] = value
    return target


def _pick(row: dict[str, Any], mapping: dict[str, str]) -> dict[str, Any]:
    return {key: row[col] for key, col in mapping.items() if row[col] is not None}


def _as_dicts(nc: NormalizedConversation) -> dict[str, list[dict[str, Any]]]:
    out = {
        t: [dict(zip(TABLE_COLUMNS[t], r, strict=True)) for r in rows]
        for t, rows in nc.rows.items()
    }
    for rows in out.values():
        for row in rows:
            row["_extra"] = _restore(row)
    return out


def _finish(row: dict[str, Any], built: dict[str, Any]) -> Any:
    extra = row["_extra"]
    if row.get("_not_object"):
        return extra["_value"]
    return _merge(built, extra)


def _item(row: dict[str, Any], mapping: dict[str, str]) -> Any:
    return _finish(row, _pick(row, mapping))


BUTTON_COLUMNS = ("button_type", "text", "url", "hidden", "attributes")
INTENT = {"id": "id", "title": "title", "inherit_skill": "inherit_skill"}
ACTION = {
    "id": "id",
    "action_type": "action_type",
    "language": "language",
    "transfer_to_human": "transfer_to_human",
}


def reconstruct(nc: NormalizedConversation) -> dict[str, Any]:
    """The conversation as exported, minus expected `type` tags, nulls and empty containers."""
    t = _as_dicts(nc)
    # Each reference with a usable id (its column is set), as the referring row rebuilds it:
    # the dimension rows must hold the same values, once each (normalize.references).
    references: dict[str, list[Any]] = {"intents": [], "actions": []}
    crow = t["conversations"][0]
    conv = _pick(
        crow,
        {
            k: k
            for k in (
                *("id", "reference", "environment", "reviewed", "quality_label"),
                *("authentication_identifier", "user_information"),
            )
        },
    )
    conv["time"] = _pick(crow, {"created": "created_at", "last_message_created": "last_message_at"})
    conv["messages"] = []
    for m in t["messages"]:
        msg = _pick(m, {k: k for k in ("id", "time", "type", "is_human_chat", "session_id")})
        if m["type"] in KNOWN_MESSAGE:
            question = _pick(
                m,
                {
                    k: k
                    for k in (
                        "input",
                        "predicted_language",
                        "sentiment",
                        "labels",
                        "important_words",
                    )
                },
            )
            question["analysis"] = []
            for a in t["intent_analysis"]:
                if a["message_id"] != m["id"]:
                    continue
                item = _pick(
                    a, {"processed": "processed", "translated": "translated", "winner": "winner"}
                )
                item["intent"] = _pick(
                    a,
                    {
                        "id": "intent_id",
                        "title": "intent_title",
                        "inherit_skill": "intent_inherit_skill",
                    },
                )
                analysed = _finish(a, item)
                if a["intent_id"] is not None:
                    references["intents"].append(_prune(analysed["intent"]))
                question["analysis"].append(analysed)
            msg["question"] = question
            # Each reference is rebuilt from the message's own row; the dimension rows are
            # checked against the references once the conversation is whole.
            msg["intents"] = {
                name: _pick(m, {k: f"{name}_intent_{k}" for k in INTENT})
                for name in ("predicted", "came_from")
            }
            msg["actions"] = {
                name: _pick(m, {k: f"{name}_action_{k.removeprefix('action_')}" for k in ACTION})
                for name in ("displayed", "came_from")
            }
            msg.update(
                _pick(
                    m,
                    {
                        k: k
                        for k in (
                            *("source_url", "device", "system_action_trigger", "human_agent"),
                            *("matched_filter", "sent_filter_values"),
                        )
                    },
                )
            )
            msg["button_clicked"] = _pick(
                m,
                {k: f"clicked_button_{k}" for k in ("type", "text", "url", "hidden", "source_url")},
            )
            msg["button_clicked"].pop("type", None)
            msg["button_clicked"].update(
                _pick(m, {"id": "clicked_button_id", "button_type": "clicked_button_type"})
            )
            msg["content"] = []
            for c in t["content"]:
                if c["message_id"] != m["id"]:
                    continue
                mapping = {
                    k: k for k in ("type", "time", "text", "url", "video_type", "video_fullscreen")
                }
                item = _pick(c, {**mapping, "ssml": "ssml", "json": "json"})
                buttons = [
                    _item(b, {"id": "button_id", **{k: k for k in BUTTON_COLUMNS}})
                    for b in t["buttons"]
                    if b["message_id"] == m["id"] and b["content_position"] == c["position"]
                ]
                if buttons:
                    item["buttons"] = buttons
                msg["content"].append(_finish(c, item))
        message = _merge(msg, m["_extra"])
        for group, kind, names in (
            ("intents", "intent", ("predicted", "came_from")),
            ("actions", "action", ("displayed", "came_from")),
        ):
            for name in names:
                if m["type"] in KNOWN_MESSAGE and m[f"{name}_{kind}_id"] is not None:
                    references[group].append(_prune(message[group][name]))
        conv["messages"].append(message)
    for group, mapping in (("intents", INTENT), ("actions", ACTION)):
        held = [_prune(_item(row, mapping)) for row in t[group]]
        assert all(ref in held for ref in references[group]), f"a reference lost from {group}"
        assert all(row in references[group] for row in held), f"a row of {group} from nowhere"
    return _merge(conv, crow["_extra"])


# --- the exported side, made comparable ------------------------------------------------------

EXPECTED_TAG = {"conversation", "question_analysis", "intent", "action", "button"}


def _known(value: Any, known: set[str]) -> bool:
    return isinstance(value, str) and value in known


def _strip_tag(obj: Any, expected: str) -> None:
    if isinstance(obj, dict) and obj.get("type") == expected:
        del obj["type"]


def _parse_time(obj: Any, key: str) -> None:
    if isinstance(obj, dict) and isinstance(obj.get(key), str):
        obj[key] = datetime.fromisoformat(obj[key]).astimezone(UTC)


def comparable(conv: dict[str, Any]) -> dict[str, Any]:
    """The export with what the warehouse legitimately normalises: tags, time zones."""
    conv = copy.deepcopy(conv)
    _strip_tag(conv, "conversation")
    for key in ("created", "last_message_created"):
        _parse_time(conv.get("time"), key)
    for msg in conv["messages"]:
        _parse_time(msg, "time")
        if not _known(msg.get("type"), KNOWN_MESSAGE):
            continue
        question = msg.get("question")
        _strip_tag(question, "question_analysis")
        if isinstance(question, dict) and isinstance(question.get("analysis"), list):
            for item in question["analysis"]:
                if isinstance(item, dict):
                    _strip_tag(item.get("intent"), "intent")
        for group, tag in (("intents", "intent"), ("actions", "action")):
            refs = msg.get(group)
            if isinstance(refs, dict):
                for name in ("predicted", "came_from", "displayed"):
                    if not (group == "intents" and name == "displayed"):
                        if not (group == "actions" and name == "predicted"):
                            _strip_tag(refs.get(name), tag)
        _strip_tag(msg.get("button_clicked"), "button")
        content = msg.get("content")
        for item in content if isinstance(content, list) else []:
            _parse_time(item, "time")
            if isinstance(item, dict) and _known(item.get("type"), KNOWN_CONTENT):
                for button in (
                    item.get("buttons") or [] if isinstance(item.get("buttons"), list) else []
                ):
                    _strip_tag(button, "button")
    return conv


def _prune(value: Any) -> Any:
    """Nulls and empty containers carry no leaf: the warehouse does not tell them from absence."""
    if isinstance(value, dict):
        pruned = {k: _prune(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if v is not None and v != {} and v != []}
    if isinstance(value, list):
        items = [_prune(v) for v in value]
        return [v for v in items if v is not None and v != {} and v != []]
    return value


def _canonical(value: Any) -> str:
    # json keeps True apart from 1 (== does not), and shows datetimes as instants.
    return json.dumps(_prune(value), sort_keys=True, default=lambda d: d.isoformat())


def assert_lossless(conv: dict[str, Any]) -> None:
    nc = normalize_conversation(conv)
    assert _canonical(reconstruct(nc)) == _canonical(comparable(conv))


# --- tests -----------------------------------------------------------------------------------


def test_documented_example_is_lossless() -> None:
    assert_lossless(json.loads(EXPORT.read_text())[1])


def test_odd_conversation_is_lossless() -> None:
    conv = {
        "type": "chat",
        "id": 1,
        "_original": "mine",
        "time": {"created": "2021-01-28T17:20:48+01:00", "x": 1},
        "messages": [
            {
                "id": 2,
                "type": "question",
                "question": {
                    "type": "qa",
                    "input": "a\x00b",
                    "analysis": [{"intent": {"id": "z"}}, 5],
                },
                "intents": {"predicted": {"title": "no id", "inherit_skill": True}, "came_from": 3},
            },
            {
                "id": 3,
                "type": "answer",
                "actions": {
                    "displayed": {"id": 4, "weird\ud800": "\ud83d"},
                    "came_from": {"language": 5},
                },
                "content": [
                    {"type": "link", "buttons": [{"id": 1, "hidden": "no"}, None, [1]]},
                    {"type": "poll", "buttons": [{"id": 2}]},
                    "text",
                ],
                "button_clicked": {"id": 7, "type": "link", "attributes": {"a": None}},
            },
            {"id": 4, "type": "survey", "question": {"input": "q"}},
        ],
    }
    assert_lossless(conv)


# Strings from a small alphabet that includes what PostgreSQL cannot store.
_text = st.text(
    st.sampled_from(["a", "Z", " ", "é", "😀", "\x00", "\ud800", "\udfff", "_", "."]), max_size=5
)
_json: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_text, children, max_size=3),
    max_leaves=6,
)
_zones = st.sampled_from(
    [UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-9, minutes=-30))]
)
_time = st.datetimes(
    min_value=datetime(1990, 1, 1), max_value=datetime(2040, 1, 1), timezones=_zones
).map(datetime.isoformat)
_UNKNOWN_KEYS = st.sampled_from(["foo", "_foo", "__bar", "_original", "_value", "", "a.b", "x\x00"])
ABSENT = object()


def _maybe(right: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A field: absent, null, well-typed, or any JSON value (a misfit, usually).

    Timestamps are never misfits: a timestamp that is not one rejects the conversation.
    """
    if right is _time:
        return st.one_of(st.just(ABSENT), st.none(), right)
    return st.one_of(st.just(ABSENT), st.none(), right, right, _json)


def _obj(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    known = st.fixed_dictionaries({k: _maybe(v) for k, v in fields.items()})
    unknown = st.dictionaries(_UNKNOWN_KEYS, _json, max_size=2)
    return st.builds(
        lambda k, u: {**u, **{a: b for a, b in k.items() if b is not ABSENT}}, known, unknown
    )


def _tag(expected: str) -> st.SearchStrategy[str]:
    return st.sampled_from([expected, expected, "other"])


_ids = st.integers(1, 50)
_intent = _obj({"type": _tag("intent"), "id": _ids, "title": _text, "inherit_skill": st.booleans()})
_action = _obj(
    {
        "type": _tag("action"),
        "id": _ids,
        "action_type": _text,
        "language": _text,
        "transfer_to_human": st.booleans(),
    }
)
_button = _obj(
    {
        "type": _tag("button"),
        "id": _ids,
        "button_type": _text,
        "text": _text,
        "url": _text,
        "hidden": st.booleans(),
        "attributes": _json,
    }
)
_content = _obj(
    {
        "type": st.sampled_from(["text", "image", "video", "json", "link", "ssml", "carousel"]),
        "time": _time,
        "text": _text,
        "url": _text,
        "video_type": _text,
        "video_fullscreen": st.booleans(),
        "ssml": _text,
        "json": _json,
        "buttons": st.lists(_button | _json, max_size=2),
    }
)
_analysis = _obj(
    {"processed": _text, "translated": _text, "winner": st.booleans(), "intent": _intent}
)
_question = _obj(
    {
        "type": _tag("question_analysis"),
        "input": _text,
        "predicted_language": _text,
        "sentiment": _text,
        "labels": st.lists(_text, max_size=2),
        "important_words": st.lists(_text, max_size=2),
        "analysis": st.lists(_analysis | _json, max_size=2),
    }
)
_message_fields = {
    "time": _time,
    "type": st.sampled_from(["question", "answer", "answer", "handover"]),
    "is_human_chat": st.booleans(),
    "session_id": _text,
    "question": _question,
    "source_url": _text,
    "device": _text,
    "intents": _obj({"predicted": _intent, "came_from": _intent}),
    "sent_filter_values": _json,
    "actions": _obj({"displayed": _action, "came_from": _action}),
    "system_action_trigger": _text,
    "content": st.lists(_content | _json, max_size=2),
    "button_clicked": _obj(
        {
            "type": _tag("button"),
            "id": _ids,
            "button_type": _text,
            "text": _text,
            "url": _text,
            "hidden": st.booleans(),
            "source_url": _text,
        }
    ),
    "human_agent": _json,
    "matched_filter": _json,
}


@st.composite
def conversations(draw: st.DrawFn) -> dict[str, Any]:
    conv = draw(
        _obj(
            {
                "type": _tag("conversation"),
                "reference": _text,
                "environment": _text,
                "time": _obj({"created": _time, "last_message_created": _time}),
                "reviewed": st.booleans(),
                "quality_label": _text,
                "authentication_identifier": _text,
                "user_information": _json,
            }
        )
    )
    ids = draw(st.lists(st.integers(1, 10**12), unique=True, max_size=3))
    conv["id"] = draw(st.integers(1, 2**63 - 1))
    conv["messages"] = [{**draw(_obj(_message_fields)), "id": mid} for mid in ids]
    # As a JSON parser would hand it over (e.g. an escaped surrogate pair becomes one character).
    parsed: dict[str, Any] = json.loads(json.dumps(conv))
    return parsed


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conversations())
def test_random_conversations_are_lossless(conv: dict[str, Any]) -> None:
    assert_lossless(conv)
    # Determinism: same export, same rows and hash.
    assert normalize_conversation(copy.deepcopy(conv)) == normalize_conversation(conv)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conversations())
def test_every_stored_string_is_storable(conv: dict[str, Any]) -> None:
    """No NUL and no lone surrogate reaches a column, however deep in a JSON value."""
    nc = normalize_conversation(conv)

    def check(value: Any) -> None:
        if isinstance(value, str):
            assert "\x00" not in value
            value.encode("utf-8")  # raises on a lone surrogate
        elif isinstance(value, dict):
            for key, item in value.items():
                check(key)
                check(item)
        elif isinstance(value, list | tuple):
            for item in value:
                check(item)

    check(nc.rows)


def test_decimal_numbers_become_floats() -> None:
    conv = {"id": 1, "user_information": {"score": Decimal("0.5")}, "messages": []}
    nc = normalize_conversation(conv)
    assert nc.rows["conversations"][0][8] == {"score": 0.5}
    float_conv = {"id": 1, "user_information": {"score": 0.5}, "messages": []}
    assert normalize_conversation(float_conv).rows == nc.rows
