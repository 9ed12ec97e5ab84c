"""Malformed conversations are rejected clearly; odd but valid ones keep every value."""

from __future__ import annotations

from typing import Any

import pytest

from etl.normalize import TABLE_COLUMNS, NormalizeError, normalize_conversation

T = "2021-01-28T17:20:48.812727+01:00"


def _one(conv: dict[str, Any], table: str, index: int = 0) -> dict[str, Any]:
    row = normalize_conversation(conv).rows[table][index]
    return dict(zip(TABLE_COLUMNS[table], row, strict=True))


# --- rejections ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("conv", "field", "words"),
    [
        ({"messages": []}, "id", "no integer id (got None)"),
        ({"id": True, "messages": []}, "id", "integer"),
        ({"id": "12", "messages": []}, "id", "integer"),
        ({"id": 1.0, "messages": []}, "id", "integer"),
        ({"id": 2**63, "messages": []}, "id", "integer"),
        ({"id": 7}, "messages", "missing"),
        ({"id": 7, "messages": {}}, "messages", "list"),
        ({"id": 7, "messages": [{"type": "question"}]}, "messages[0].id", "integer"),
        ({"id": 7, "messages": [{"id": False}]}, "messages[0].id", "integer"),
        ({"id": 7, "messages": [{"id": 1}, "x"]}, "messages[1].id", "integer"),
        ({"id": 7, "messages": [{"id": 1}, {"id": 1}]}, "messages[1].id", "twice"),
        (
            {"id": 7, "messages": [{"id": 1, "time": "yesterday"}]},
            "messages[0].time",
            "unparseable",
        ),
        ({"id": 7, "messages": [{"id": 1, "time": 1611850848}]}, "messages[0].time", "ISO-8601"),
        (
            {"id": 7, "messages": [{"id": 1, "time": "2021-01-28T17:20:48"}]},
            "messages[0].time",
            "no UTC offset",
        ),
        (
            {"id": 7, "messages": [{"id": 1, "time": "0001-01-01T00:00:00+01:00"}]},
            "messages[0].time",
            "unparseable",
        ),
        (
            {"id": 7, "time": {"created": "2021-13-01T00:00:00Z"}, "messages": []},
            "time.created",
            "unparseable",
        ),
        (
            {
                "id": 7,
                "messages": [
                    {"id": 1, "type": "answer", "content": [{"type": "text", "time": "x"}]}
                ],
            },
            "messages[0].content[0].time",
            "unparseable",
        ),
    ],
)
def test_rejected(conv: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(NormalizeError) as info:
        normalize_conversation(conv)
    error = info.value
    assert error.field == field
    message = str(error)
    assert words in message
    assert repr(field) in message
    if isinstance(conv.get("id"), int) and conv["id"] == 7:
        assert "conversation 7" in message
        assert "conversation_ids=[7]" in message  # says what to do


@pytest.mark.parametrize("conv", [None, [], "conversation", 7])
def test_not_an_object_is_rejected(conv: Any) -> None:
    with pytest.raises(NormalizeError, match="expected a conversation object"):
        normalize_conversation(conv)


# --- tolerance: optional fields missing ----------------------------------------------------


def test_minimal_conversation() -> None:
    nc = normalize_conversation({"id": 1, "messages": []})
    assert nc.rows["conversations"] == [(1, *[None] * 8, 0, None, None)]
    assert all(nc.rows[t] == [] for t in TABLE_COLUMNS if t != "conversations")


def test_optional_fields_missing() -> None:
    conv = {
        "id": 1,
        "messages": [
            {"id": 10},
            {"id": 11, "type": "question"},  # no `question` (very old conversations)
            {"id": 12, "type": "question", "question": {"analysis": [{"intent": {"id": 5}}]}},
            {"id": 13, "type": "answer", "intents": {"came_from": {"id": 5}}},  # no title
            {"id": 14, "type": "answer", "content": [], "actions": {}},
            {"id": 15, "type": "answer", "content": [{"type": "link"}]},
        ],
    }
    nc = normalize_conversation(conv)
    assert [r[0] for r in nc.rows["messages"]] == [10, 11, 12, 13, 14, 15]
    # Two references to intent 5, with the same (no) values: one row is enough to fold.
    assert nc.rows["intents"] == [(5, None, None, None, None)]
    assert len(nc.rows["intent_analysis"]) == 1
    assert nc.rows["actions"] == []
    assert nc.rows["content"] == [(15, 0, 1, "link", None, *[None] * 7)]
    assert all(r[-1] is None for t in nc.rows for r in nc.rows[t])


def test_null_means_absent() -> None:
    conv = {
        "id": 1,
        "reference": None,
        "time": None,
        "messages": [{"id": 2, "type": "question", "question": None}],
    }
    nc = normalize_conversation(conv)
    assert nc.rows["conversations"][0][-2] is None
    assert nc.rows["messages"][0][-1] is None


# --- nothing lost: unknown keys, types and misfits land in extra -----------------------------


def test_unknown_keys_at_every_level() -> None:
    conv = {
        "type": "conversation",
        "id": 1,
        "new_top": {"a": 1},
        "time": {"created": T, "foo": "bar"},
        "messages": [
            {
                "id": 2,
                "type": "question",
                "mood": "happy",
                "question": {"type": "question_analysis", "input": "hi", "foo": 1},
                "intents": {"predicted": {"type": "intent", "id": 3, "colour": "red"}, "other": 4},
            },
            {
                "id": 4,
                "type": "answer",
                "actions": {"displayed": {"type": "action", "id": 9, "cost": 2}, "foo": 5},
                "button_clicked": {"type": "button", "id": 7, "attributes": {"k": "v"}},
                "content": [
                    {"type": "text", "text": "x", "font": "big"},
                    {"type": "link", "buttons": [{"type": "button", "id": 1, "glow": True}]},
                    {"type": "hologram", "time": T, "beam": [1, 2]},
                ],
            },
            {
                "id": 5,
                "type": "survey",
                "time": T,
                "answers": [1, 2],
                "content": [{"type": "text"}],
            },
        ],
    }
    nc = normalize_conversation(conv)
    rows = {t: [dict(zip(TABLE_COLUMNS[t], r, strict=True)) for r in nc.rows[t]] for t in nc.rows}
    assert rows["conversations"][0]["extra"] == {"new_top": {"a": 1}, "time": {"foo": "bar"}}
    q, a, survey = rows["messages"]
    # An occurrence's unknown keys stay with the message, and go to the dimension row too.
    assert q["extra"] == {
        "mood": "happy",
        "question": {"foo": 1},
        "intents": {"predicted": {"colour": "red"}, "other": 4},
    }
    assert q["input"] == "hi"
    assert rows["intents"][0]["extra"] == {"colour": "red"}
    assert a["extra"] == {
        "actions": {"displayed": {"cost": 2}, "foo": 5},
        "button_clicked": {"attributes": {"k": "v"}},
    }
    assert rows["actions"][0]["extra"] == {"cost": 2}
    assert [c["extra"] for c in rows["content"]] == [
        {"font": "big"},
        None,
        {"beam": [1, 2]},
    ]
    assert rows["content"][2]["type"] == "hologram"
    assert rows["content"][2]["time"] is not None
    assert rows["buttons"][0]["extra"] == {"glow": True}
    # An undocumented message type: common fields in columns, everything else in extra.
    assert survey["type"] == "survey"
    assert survey["time"] is not None
    assert survey["extra"] == {"answers": [1, 2], "content": [{"type": "text"}]}
    assert len(rows["content"]) == 3  # the survey's content is not split into rows


def test_unexpected_type_tags_are_kept() -> None:
    conv = {
        "type": "chat",
        "id": 1,
        "messages": [
            {"id": 2, "type": "answer", "actions": {"displayed": {"type": "macro", "id": 3}}},
        ],
    }
    nc = normalize_conversation(conv)
    assert nc.rows["conversations"][0][10] == {"type": "chat"}
    assert nc.rows["actions"][0][-1] == {"type": "macro"}


def test_misfits_go_to_extra() -> None:
    conv = {
        "id": 1,
        "reviewed": "yes",
        "reference": 123,
        "time": "today",
        "messages": [
            {
                "id": 2,
                "type": "question",
                "is_human_chat": 1,
                "session_id": 99,
                "question": "what?",
                "intents": {"predicted": {"id": "abc", "title": "T", "inherit_skill": False}},
            },
            {
                "id": 3,
                "type": "answer",
                "actions": {"displayed": {"id": 1.5, "language": "en"}, "came_from": "x"},
                "content": [{"type": "video", "video_fullscreen": "no"}, 17],
                "button_clicked": {"id": 2**70},
            },
        ],
    }
    nc = normalize_conversation(conv)
    conversation = dict(
        zip(TABLE_COLUMNS["conversations"], nc.rows["conversations"][0], strict=True)
    )
    assert conversation["reviewed"] is None
    assert conversation["extra"] == {"reviewed": "yes", "reference": 123, "time": "today"}
    q = dict(zip(TABLE_COLUMNS["messages"], nc.rows["messages"][0], strict=True))
    assert q["is_human_chat"] is None and q["session_id"] is None
    assert q["predicted_intent_id"] is None and q["predicted_intent_title"] == "T"
    assert q["predicted_intent_inherit_skill"] is False
    assert q["extra"] == {
        "is_human_chat": 1,
        "session_id": 99,
        "question": "what?",
        "intents": {"predicted": {"id": "abc"}},
    }
    a = dict(zip(TABLE_COLUMNS["messages"], nc.rows["messages"][1], strict=True))
    assert a["displayed_action_language"] == "en"
    assert a["extra"] == {
        "actions": {"displayed": {"id": 1.5}, "came_from": "x"},
        "button_clicked": {"id": 2**70},
    }
    assert nc.rows["intents"] == [] and nc.rows["actions"] == []
    assert nc.rows["content"][0][-1] == {"video_fullscreen": "no"}
    assert nc.rows["content"][1][3] is None and nc.rows["content"][1][-1] == {"_value": 17}


def test_underscore_keys_cannot_collide_with_ours() -> None:
    conv = {"id": 1, "messages": [], "_original": 1, "_value": 2, "__x": 3, "x_": 4}
    extra = normalize_conversation(conv).rows["conversations"][0][10]
    assert extra == {"__original": 1, "__value": 2, "___x": 3, "x_": 4}


def test_mapping_that_is_not_a_dict() -> None:
    from types import MappingProxyType

    conv = MappingProxyType({"id": 1, "messages": [MappingProxyType({"id": 2, "type": "answer"})]})
    nc = normalize_conversation(conv, keep_raw=True)
    assert nc.rows["messages"][0][0] == 2
    assert nc.rows["conversations"][0][11] == {"id": 1, "messages": conv["messages"]}
