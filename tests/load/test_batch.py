"""COPY data for a batch: fact rows per conversation, dimension rows once per id per batch."""

from __future__ import annotations

from typing import Any

import pytest

from etl.load.batch import BatchEncoder, encode_batch, prepare
from etl.load.copyformat import BINARY_FORMAT, DEFAULT_FORMAT, TEXT_FORMAT
from etl.normalize import TABLE_COLUMNS, NormalizeError, normalize_conversation
from tests.conftest import needs_accelerator


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
        (
            normalize_conversation(c)
            for c in (
                _conversation(1, "2024-01-02T10:00:00+00:00", "newest"),
                _conversation(2, "2024-01-01T10:00:00+00:00", "older, later in the batch"),
            )
        ),
        TEXT_FORMAT,  # readable lines; the formats carry the same values (test_copy_formats)
    )
    assert [c.id for c in batch.conversations] == [1, 2]
    assert batch.dimension_ids[0] == (42,)
    ((intent_id, title, *_),) = _intent_lines(batch)
    assert (intent_id, title) == ("42", "newest")


def test_on_a_tie_the_later_row_wins_and_the_encoder_starts_empty_again() -> None:
    encoder = BatchEncoder(TEXT_FORMAT)
    for cid, title in ((1, "first"), (2, "second")):
        encoder.add(normalize_conversation(_conversation(cid, "2024-01-01T10:00:00Z", title)))
    assert len(encoder) == 2
    ((_, title, *_),) = _intent_lines(encoder.finish())
    assert title == "second"
    assert len(encoder) == 0
    empty = encoder.finish()
    assert empty.conversations == [] and empty.dimensions == (b"", b"")


def test_json_too_deep_to_encode_is_a_data_error_naming_the_conversation() -> None:
    # The hash is taken at a shallower stack than the encoding, so a value can pass one and
    # not the other; here the row is given such a value directly (no recursion-limit tricks:
    # since Python 3.12 the limit no longer applies to the C encoder).
    normalized = normalize_conversation(_conversation(5, "2024-01-01T10:00:00Z", "t"))
    deep: Any = "leaf"
    for _ in range(100_000):
        deep = [deep]
    row = list(normalized.rows["conversations"][0])
    row[TABLE_COLUMNS["conversations"].index("user_information")] = deep
    normalized.rows["conversations"] = [tuple(row)]
    normalized.plain = False  # as the hash would have found it
    for copy_format in (TEXT_FORMAT, DEFAULT_FORMAT):
        with pytest.raises(NormalizeError, match="nested too deeply") as raised:
            prepare(normalized, copy_format)
        assert raised.value.conversation_id == 5


@needs_accelerator(BINARY_FORMAT is not None)
def test_a_batch_takes_conversations_prepared_in_its_own_format_only() -> None:
    normalized = normalize_conversation(_conversation(6, "2024-01-01T10:00:00Z", "t"))
    encoder = BatchEncoder(DEFAULT_FORMAT)
    with pytest.raises(ValueError, match="another COPY format"):
        encoder.add_prepared(prepare(normalized, TEXT_FORMAT))
    encoder.add_prepared(prepare(normalized, DEFAULT_FORMAT))
    assert encoder.finish().binary
