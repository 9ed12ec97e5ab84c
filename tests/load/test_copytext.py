"""COPY text for a batch: fact rows per conversation, dimension rows once per id per batch."""

from __future__ import annotations

import inspect
import sys
from typing import Any

import pytest

from etl.load.copytext import BatchEncoder, encode_batch, prepare
from etl.normalize import NormalizeError, normalize_conversation


def _conversation(cid: int, when: str, title: str) -> dict[str, Any]:
    intent = {"type": "intent", "id": 42, "title": title}
    return {
        "type": "conversation",
        "id": cid,
        "messages": [
            {
                "id": cid * 10,
                "time": when,
                "type": "question",
                "question": {"type": "question_analysis", "input": "hi"},
                "intents": {"predicted": intent},
            }
        ],
    }


def _intent_lines(batch: Any) -> list[list[str]]:
    return [line.split("\t") for line in batch.dimensions[0].decode().splitlines()]


def test_the_latest_row_per_dimension_id_is_kept_for_the_whole_batch() -> None:
    batch = encode_batch(
        normalize_conversation(c)
        for c in (
            _conversation(1, "2024-01-02T10:00:00+00:00", "newest"),
            _conversation(2, "2024-01-01T10:00:00+00:00", "older, later in the batch"),
        )
    )
    assert [c.id for c in batch.conversations] == [1, 2]
    assert batch.dimension_ids[0] == (42,)
    ((intent_id, title, *_),) = _intent_lines(batch)
    assert (intent_id, title) == ("42", "newest")


def test_on_a_tie_the_later_row_wins_and_the_encoder_starts_empty_again() -> None:
    encoder = BatchEncoder()
    for cid, title in ((1, "first"), (2, "second")):
        encoder.add(normalize_conversation(_conversation(cid, "2024-01-01T10:00:00Z", title)))
    assert len(encoder) == 2
    ((_, title, *_),) = _intent_lines(encoder.finish())
    assert title == "second"
    assert len(encoder) == 0
    empty = encoder.finish()
    assert empty.conversations == [] and empty.dimensions == (b"", b"")


def test_json_too_deep_to_encode_is_a_data_error_naming_the_conversation() -> None:
    deep: Any = "leaf"
    for _ in range(300):  # beyond orjson's 255 levels: the standard encoder takes over
        deep = [deep]
    conversation = _conversation(5, "2024-01-01T10:00:00Z", "t")
    conversation["user_information"] = deep
    normalized = normalize_conversation(conversation)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(len(inspect.stack()) + 150)  # deep enough to hash, not to encode
    try:
        with pytest.raises(NormalizeError, match="nested too deeply") as raised:
            prepare(normalized)
    finally:
        sys.setrecursionlimit(limit)
    assert raised.value.conversation_id == 5
