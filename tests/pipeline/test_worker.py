"""The extract worker: a real forked process over a real export stream."""

from __future__ import annotations

import io
import itertools
import json
import os
import signal
from typing import Any

import orjson
import pytest

from etl.extract import BrokenStreamError, ExportStream
from etl.normalize import NormalizeError, content_digest, normalize_conversation
from etl.normalize.wire import decoded
from etl.pipeline.runner import loaded_share, normalize_batch
from etl.pipeline.worker import ExtractWorker, WorkerFailed, batch_limits
from tests.conftest import SEED_EXPORT


def _stream(elements: list[Any]) -> ExportStream:
    body = ("[" + ",".join(json.dumps(e) for e in elements) + "]").encode()
    return ExportStream(io.BytesIO(body), None, source="test.json")


def _export(conversations: list[dict[str, Any]], **tail: Any) -> list[Any]:
    return [
        {"type": "query_info", "conversations": len(conversations)},
        *conversations,
        {"type": "post_query_info", **tail},
    ]


def _conversations(n: int, first: int = 1) -> list[dict[str, Any]]:
    return [
        {"type": "conversation", "id": cid, "messages": [], "reference": f"r{cid}"}
        for cid in range(first, first + n)
    ]


def _received(worker: ExtractWorker) -> list[list[tuple[Any, Any]]]:
    """Each batch's (digest, conversation) pairs, from conversations sent as text."""
    batches = []
    for items, rejects in worker:
        assert rejects == []  # no quarantine asked for
        assert all(rows is None for _, _, _, rows in items)
        batches.append(
            [(d, orjson.loads(p) if isinstance(p, bytes) else p) for d, p, _, _ in items]
        )
    return batches


def test_batches_carry_every_conversation_hashed_in_order() -> None:
    conversations = _conversations(200)
    stream = _stream(_export(conversations, note="end"))
    with ExtractWorker(stream, batch_size=100, loaded_share=0.0) as worker:
        batches = _received(worker)
        end = worker.end
    assert [len(b) for b in batches] == [64, 100, 36]
    got = [conversation for batch in batches for _, conversation in batch]
    assert got == conversations
    assert [d for batch in batches for d, _ in batch] == [content_digest(c) for c in conversations]
    assert end is not None and end.received == 200
    assert end.post_query_info == {"type": "post_query_info", "note": "end"}


def test_a_stream_error_comes_after_the_conversations_read_before_it() -> None:
    """So that a conversation that cannot be loaded is reported before a stream that broke
    after it (the loading process meets its data error first)."""
    elements = _export(_conversations(3))[:-1]  # no post_query_info: the stream is incomplete
    with ExtractWorker(_stream(elements), batch_size=100) as worker:
        batches = iter(worker)
        first, _ = next(batches)
        with pytest.raises(BrokenStreamError, match="without post_query_info"):
            next(batches)
    assert [(d.id, position) for d, _, position, _ in first] == [(1, 0), (2, 1), (3, 2)]


def test_an_error_keeps_its_class_message_and_attributes_across_the_pipe() -> None:
    elements = _export([{"type": "conversation", "id": 7, "messages": "nope"}])
    with ExtractWorker(_stream(elements), batch_size=10) as worker:
        with pytest.raises(NormalizeError) as info:
            list(worker)
    assert info.value.conversation_id == 7 and info.value.field == "messages"
    assert "conversation 7, field 'messages': messages must be a list" in str(info.value)


class _KilledWhileReading:
    """A stream whose reader (the worker) is killed, as by the OOM killer."""

    finite_floats = True

    def conversations(self) -> Any:
        os.kill(os.getpid(), signal.SIGKILL)
        yield from ()


def test_a_worker_that_dies_without_a_word_fails_the_window() -> None:
    stream: Any = _KilledWhileReading()
    with ExtractWorker(stream, batch_size=10) as worker:
        with pytest.raises(WorkerFailed, match="killed by SIGKILL"):
            list(worker)


def test_a_window_starts_with_small_batches_that_double_up_to_the_batch_size() -> None:
    sizes = list(itertools.islice(batch_limits(500), 7))
    assert sizes == [64, 128, 256, 500, 500, 500, 500]
    assert list(itertools.islice(batch_limits(100), 3)) == [64, 100, 100]
    assert list(itertools.islice(batch_limits(10), 2)) == [10, 10]  # never above the setting
    assert list(itertools.islice(batch_limits(1), 2)) == [1, 1]


def test_with_quarantine_an_unhashable_conversation_comes_as_a_reject_in_its_batch() -> None:
    bad = {"type": "conversation", "id": "abc", "messages": []}
    elements = _export([*_conversations(2), bad, *_conversations(1, first=9)])
    with ExtractWorker(_stream(elements), batch_size=100, quarantine=True) as worker:
        ((items, rejects),) = list(worker)
        end = worker.end
    assert [(d.id, position) for d, _, position, _ in items] == [(1, 0), (2, 1), (9, 3)]
    (reject,) = rejects
    assert (reject.position, reject.conversation_id) == (2, None)
    assert "no integer id (got 'abc')" in reject.error
    assert json.loads(reject.body) == bad
    assert end is not None and end.received == 4


def _conversation(cid: int, message_id: Any) -> dict[str, Any]:
    return {
        "type": "conversation",
        "id": cid,
        "time": {"created": "2024-03-25T10:00:00.5+01:00"},
        "messages": [
            {"id": message_id, "type": "question", "time": "2024-03-25T10:00:01+01:00",
             "question": {"input": "hi", "surprise": [1, 2]}},
        ],
    }  # fmt: skip


def test_while_the_window_loads_what_it_reads_the_worker_sends_rows_not_text() -> None:
    conversations = [_conversation(cid, 100 + cid) for cid in range(1, 4)]
    with ExtractWorker(_stream(_export(conversations)), batch_size=100) as worker:
        ((items, rejects),) = list(worker)
    assert rejects == []
    assert [(d, text, position) for d, text, position, _ in items] == [
        (content_digest(c), None, i) for i, c in enumerate(conversations)
    ]
    for (_, _, _, rows), conversation in zip(items, conversations, strict=True):
        assert rows is not None
        assert decoded(rows) == normalize_conversation(conversation).rows


def test_with_quarantine_rows_come_with_their_text_and_a_bad_one_comes_as_a_reject() -> None:
    """The loader may still have to quarantine a normalized conversation (a message id that
    another conversation holds), so its text crosses too; one the worker cannot normalize
    comes as a reject in its batch, with its text."""
    good, bad = _conversation(1, 11), _conversation(2, "eleven")
    with ExtractWorker(_stream(_export([good, bad])), batch_size=100, quarantine=True) as worker:
        ((items, rejects),) = list(worker)
    ((digest, text, position, rows),) = items
    assert (digest.id, position, rows is not None) == (1, 0, True)
    assert isinstance(text, bytes) and orjson.loads(text) == good
    (reject,) = rejects
    assert (reject.position, reject.conversation_id) == (1, 2)
    assert "message id must be an integer, got 'eleven'" in reject.error
    assert json.loads(reject.body) == bad


def test_without_quarantine_a_conversation_the_worker_cannot_normalize_fails_the_window() -> None:
    elements = _export([_conversation(1, 11), _conversation(2, "eleven")])
    with ExtractWorker(_stream(elements), batch_size=100) as worker:
        batches = iter(worker)
        first, _ = next(batches)  # what was read before it comes first
        with pytest.raises(NormalizeError) as info:
            next(batches)
    assert [d.id for d, _, _, _ in first] == [1]
    assert info.value.conversation_id == 2 and info.value.field == "messages[0].id"


def test_the_loaded_share_counts_new_and_changed_among_every_outcome() -> None:
    outcomes = {"new": 3, "changed": 1, "unchanged": 10, "older": 2, "rejected": 3, "forgotten": 1}
    assert loaded_share(outcomes) == 4 / 20
    assert loaded_share(dict.fromkeys(outcomes, 0)) == 1.0  # nothing merged yet: a first load


def _rows_of_window(
    conversations: list[dict[str, Any]],
    share: float,
    *,
    quarantine: bool = False,
    batch_size: int = 100,
) -> tuple[list[Any], list[Any]]:
    """Each conversation's rows, and the quarantined ones, as the loading thread has them."""
    normalized, quarantined = [], []
    stream = _stream(_export(conversations))
    with ExtractWorker(stream, batch_size, quarantine=quarantine, loaded_share=share) as worker:
        for items, rejects in worker:
            kept = rejects if quarantine else None
            for n in normalize_batch(items, keep_raw=False, rejects=kept):
                normalized.append((n.id, n.content_hash, n.plain, n.rows, n.position, n.body))
            quarantined.extend(rejects)
    return normalized, quarantined


def test_a_window_gives_the_same_rows_whichever_process_normalizes_it(sim_dataset: Any) -> None:
    conversations = [orjson.loads(sim_dataset.payload(i)) for i in range(len(sim_dataset))]
    conversations.append(json.loads(SEED_EXPORT.read_text())[1])
    in_the_worker = _rows_of_window(conversations, share=1.0)
    in_the_loading_process = _rows_of_window(conversations, share=0.0)
    assert len(in_the_worker[0]) == len(conversations)
    assert in_the_worker == in_the_loading_process


def test_once_told_the_window_loads_little_the_worker_sends_texts() -> None:
    """A batch is normalized where the share the run loop last reported says. Each batch
    here is larger than the pipe holds, so the worker cannot start the third before the
    second is read, which is after the share was reported (the second may go either way)."""
    padding = "x" * 40_000
    conversations = [{**_conversation(cid, 100 + cid), "reference": padding} for cid in range(6)]
    with ExtractWorker(_stream(_export(conversations)), batch_size=2) as worker:
        batches = iter(worker)
        first, _ = next(batches)
        worker.report_loaded_share(0.2)
        next(batches)
        third, _ = next(batches)
    assert all(rows is not None and text is None for _, text, _, rows in first)
    assert all(rows is None and isinstance(text, bytes) for _, text, _, rows in third)
    assert [d.id for d, _, _, _ in third] == [4, 5]


def test_rows_too_deep_for_orjson_cross_as_text_and_give_the_same_rows() -> None:
    deep: Any = []
    for _ in range(252):
        deep = [deep]
    conversations = [{**_conversation(1, 11), "surprise": deep}, _conversation(2, 12)]
    with ExtractWorker(_stream(_export(conversations)), batch_size=100) as worker:
        ((items, _),) = list(worker)
    assert [rows is None for _, _, _, rows in items] == [True, False]
    rows = normalize_batch(items, keep_raw=False)
    assert [n.rows for n in rows] == [normalize_conversation(c).rows for c in conversations]


def test_a_quarantined_conversation_keeps_the_same_text_whichever_process_rejects_it() -> None:
    """The body's last conversation is parsed by ijson and has no text as sent: both
    processes keep the JSON the worker made for it, so a re-run finds the same reject."""
    conversations = [_conversation(1, 11), {**_conversation(2, "eleven"), "reference": "é"}]
    by_worker = _rows_of_window(conversations, share=1.0, quarantine=True)[1]
    by_loading_process = _rows_of_window(conversations, share=0.0, quarantine=True)[1]
    assert [r.conversation_id for r in by_worker] == [2]
    assert by_worker == by_loading_process


def _window_result(
    conversations: list[dict[str, Any]], share: float, batch_size: int
) -> tuple[dict[int, Any], list[int | None]]:
    """What the warehouse ends with: each conversation's last loaded rows (a later batch's
    copy replaces an earlier one's, as merge does) and the quarantined positions."""
    loaded, quarantined = _rows_of_window(
        conversations, share=share, quarantine=True, batch_size=batch_size
    )
    return {n[0]: n[3] for n in loaded}, sorted(r.position for r in quarantined)


_GOOD, _BETTER = _conversation(1, 11), {**_conversation(1, 11), "reference": "later"}
_BAD = {**_conversation(1, "eleven"), "reference": "bad"}


@pytest.mark.parametrize(
    ("copies", "loaded", "quarantined"),
    [
        pytest.param([_GOOD, _BAD], _GOOD, [1], id="bad-last"),
        pytest.param([_BAD, _GOOD], _GOOD, [0], id="bad-first"),
        pytest.param([_GOOD, _BETTER, _BAD], _BETTER, [2], id="good-better-bad"),
        pytest.param([_BAD, _GOOD, _BAD, _BETTER], _BETTER, [0, 2], id="bad-good-bad-better"),
        pytest.param([_BAD, _BAD], None, [0, 1], id="bad-bad"),
    ],
)
def test_copies_of_a_conversation_in_a_window_end_the_same_whatever_the_batches(
    copies: list[dict[str, Any]], loaded: dict[str, Any] | None, quarantined: list[int]
) -> None:
    """Every copy that cannot be loaded is quarantined and the last one that can is loaded,
    whichever process normalizes them and whether they share a batch or not."""
    expected = {1: normalize_conversation(loaded).rows} if loaded else {}
    for share in (1.0, 0.0):
        for batch_size in (100, 1):
            result = _window_result([*copies, _conversation(2, 12)], share, batch_size)
            assert result == ({**expected, 2: normalize_conversation(_conversation(2, 12)).rows},
                              quarantined), (share, batch_size)  # fmt: skip


def test_a_conversation_that_comes_again_starts_a_new_batch() -> None:
    copies = [_conversation(1, 11), _conversation(2, 12), _GOOD, _BAD, _conversation(3, 13)]
    with ExtractWorker(_stream(_export(copies)), 100, quarantine=True) as worker:
        batches = [
            ([d.id for d, _, _, _ in items], [r.conversation_id for r in rejects])
            for items, rejects in worker
        ]
    assert batches == [([1, 2], []), ([1], []), ([3], [1])]


def test_without_quarantine_an_earlier_bad_copy_fails_the_window_in_any_batch() -> None:
    for share in (1.0, 0.0):
        for batch_size in (100, 1):
            with pytest.raises(NormalizeError) as info:
                _rows_of_window([_BAD, _GOOD], share=share, batch_size=batch_size)
            assert info.value.conversation_id == 1, (share, batch_size)
