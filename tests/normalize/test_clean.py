"""The NUL / lone-surrogate rule: storable columns, originals kept losslessly in extra."""

from __future__ import annotations

import json
from typing import Any

from etl.normalize import TABLE_COLUMNS, normalize_conversation

FFFD = "\ufffd"


def _row(conv: dict[str, Any], table: str, index: int = 0) -> dict[str, Any]:
    row = normalize_conversation(conv).rows[table][index]
    return dict(zip(TABLE_COLUMNS[table], row, strict=True))


def test_nul_in_a_text_column() -> None:
    row = _row({"id": 1, "reference": "ab\x00c", "messages": []}, "conversations")
    assert row["reference"] == f"ab{FFFD}c"
    assert row["extra"] == {"_original": {"reference": '"ab\\u0000c"'}}
    assert json.loads(row["extra"]["_original"]["reference"]) == "ab\x00c"


def test_lone_surrogate_in_a_nested_json_value_and_key() -> None:
    info = {"name": "x\ud800", "\udc00key": [1, "\x00"]}
    row = _row({"id": 1, "user_information": info, "messages": []}, "conversations")
    assert row["user_information"] == {"name": f"x{FFFD}", f"{FFFD}key": [1, FFFD]}
    assert json.loads(row["extra"]["_original"]["user_information"]) == info
    row["user_information"]["name"].encode("utf-8")  # storable


def test_offending_extra_is_kept_whole() -> None:
    conv = {"id": 1, "messages": [], "odd\x00": "v\ud800", "fine": 1}
    row = _row(conv, "conversations")
    original = json.loads(row["extra"]["_original"]["extra"])
    assert original == {"odd\x00": "v\ud800", "fine": 1}
    assert row["extra"]["fine"] == 1
    assert row["extra"][f"odd{FFFD}"] == f"v{FFFD}"


def test_child_rows_and_dimensions_follow_the_rule() -> None:
    conv = {
        "id": 1,
        "messages": [
            {
                "id": 2,
                "type": "answer",
                "time": "2021-01-01T00:00:00+00:00",
                "actions": {"displayed": {"id": 3, "language": "e\x00n"}},
                "content": [{"type": "text", "text": "<p>\x00</p>"}],
            }
        ],
    }
    nc = normalize_conversation(conv)
    message = dict(zip(TABLE_COLUMNS["messages"], nc.rows["messages"][0], strict=True))
    assert message["displayed_action_language"] == f"e{FFFD}n"
    assert message["extra"] == {"_original": {"displayed_action_language": '"e\\u0000n"'}}
    action = dict(zip(TABLE_COLUMNS["actions"], nc.rows["actions"][0], strict=True))
    assert action["extra"] == {"_original": {"language": '"e\\u0000n"'}}
    content = dict(zip(TABLE_COLUMNS["content"], nc.rows["content"][0], strict=True))
    assert content["text"] == f"<p>{FFFD}</p>"
    # Untouched values keep their identity and types (datetimes, ints).
    assert message["time"].tzinfo is not None and message["id"] == 2


def test_clean_strings_are_untouched() -> None:
    # Backslashes and the six characters "\u0000" are ordinary text, not NUL.
    conv = {"id": 1, "reference": "a\\u0000b", "environment": "é😀", "messages": []}
    row = _row(conv, "conversations")
    assert row["reference"] == "a\\u0000b"
    assert row["extra"] is None


def test_hash_differs_between_nul_and_replacement() -> None:
    a = normalize_conversation({"id": 1, "reference": "\x00", "messages": []})
    b = normalize_conversation({"id": 1, "reference": FFFD, "messages": []})
    assert a.content_hash != b.content_hash
    assert a.rows["conversations"][0][1] == b.rows["conversations"][0][1]
