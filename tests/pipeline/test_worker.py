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
from etl.normalize import NormalizeError, content_digest
from etl.pipeline.worker import ExtractWorker, WorkerFailed, batch_limits


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
    batches = []
    for items, rejects in worker:
        assert rejects == []  # no quarantine asked for
        batches.append([(d, orjson.loads(p) if isinstance(p, bytes) else p) for d, p, _ in items])
    return batches


def test_batches_carry_every_conversation_hashed_in_order() -> None:
    conversations = _conversations(200)
    with ExtractWorker(_stream(_export(conversations, note="end")), batch_size=100) as worker:
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
    assert [(d.id, position) for d, _, position in first] == [(1, 0), (2, 1), (3, 2)]


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
    assert [(d.id, position) for d, _, position in items] == [(1, 0), (2, 1), (9, 3)]
    (reject,) = rejects
    assert (reject.position, reject.conversation_id) == (2, None)
    assert "no integer id (got 'abc')" in reject.error
    assert json.loads(reject.body) == bad
    assert end is not None and end.received == 4
