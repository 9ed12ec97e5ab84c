"""The worker's side of the pipes: answers read without blocking, speculative encoding."""

from __future__ import annotations

import itertools
import os
import pickle
from collections.abc import Iterator
from typing import Any

import pytest

from etl.normalize.digest import content_digest
from etl.normalize.errors import NormalizeError
from etl.pipeline.worker import HEADER, _Answers, _Entry, _Producer, batch_limits, pack


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read_fd, write_fd = os.pipe()
    yield read_fd, write_fd
    for fd in (read_fd, write_fd):
        try:
            os.close(fd)
        except OSError:
            pass


def _frame(flags: list[bool]) -> bytes:
    return HEADER.pack(len(flags)) + pack(flags)


def test_ready_is_false_until_a_whole_answer_is_in(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    answers = _Answers(read_fd)
    flags = [True, False, True] * 7
    frame = _frame(flags)
    assert not answers.ready()
    os.write(write_fd, frame[:5])  # part of the header
    assert not answers.ready()
    os.write(write_fd, frame[5:-1])  # all but the last flag byte
    assert not answers.ready()
    os.write(write_fd, frame[-1:])
    assert answers.ready()
    assert answers.take(len(flags)) == flags


def test_two_answers_in_one_read_are_taken_in_order(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    answers = _Answers(read_fd)
    first, second = [True] * 9, [False, True]
    os.write(write_fd, _frame(first) + _frame(second))
    assert answers.ready()
    assert answers.take(9) == first
    assert answers.ready()  # already buffered: no read needed
    assert answers.take(2) == second
    assert not answers.ready()


def test_a_closed_pipe_ends_the_wait_with_an_error(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    answers = _Answers(read_fd)
    os.close(write_fd)
    assert answers.ready()  # not blocking: take() says what happened
    with pytest.raises(EOFError, match="stopped answering"):
        answers.take(3)


def test_an_answer_for_another_batch_size_is_refused(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    answers = _Answers(read_fd)
    os.write(write_fd, _frame([True, True]))
    with pytest.raises(RuntimeError, match="answer for 2 conversations, the batch has 3"):
        answers.take(3)


# -- the producer: speculative encoding until the parent's answer is in -----------------------


def _conversation(cid: int, when: str = "2024-01-01T10:00:00+00:00") -> dict[str, Any]:
    return {
        "type": "conversation",
        "id": cid,
        "messages": [{"id": cid * 10, "time": when, "type": "answer", "content": []}],
    }


class _Parent:
    """The test's side of both pipes: reads the worker's frames, writes answers."""

    def __init__(self) -> None:
        frames_read, frames_write = os.pipe()
        answers_read, self._answers_write = os.pipe()
        self.frames = os.fdopen(frames_read, "rb")
        self.out = os.fdopen(frames_write, "wb")
        self.answers = _Answers(answers_read)

    def frame(self) -> tuple[str, Any]:
        (size,) = HEADER.unpack(self.frames.read(HEADER.size))
        message: tuple[str, Any] = pickle.loads(self.frames.read(size))
        return message

    def answer(self, flags: list[bool]) -> None:
        os.write(self._answers_write, _frame(flags))


def _batch(*conversations: dict[str, Any]) -> dict[int, _Entry]:
    return {c["id"]: _Entry(c, content_digest(c)) for c in conversations}


def test_a_late_answer_keeps_only_the_changed_conversations_in_order() -> None:
    parent = _Parent()
    producer = _Producer(parent.out, parent.answers, keep_raw=False)
    producer.batch_done(4, _batch(*(_conversation(cid) for cid in (1, 2, 3, 4))))
    assert parent.frame() == (
        "hashes",
        [(c, content_digest(_conversation(c)).content_hash) for c in (1, 2, 3, 4)],
    )
    for _ in range(3):
        producer.step()  # no answer yet: all four are encoded speculatively
    parent.answer([False, True, False, True])
    producer.step()
    kind, (received, batch) = parent.frame()
    assert (kind, received) == ("batch", 4)
    assert [c.id for c in batch.conversations] == [2, 4]
    assert batch.dimensions == (b"", b"")


def test_an_unloadable_conversation_fails_the_window_only_if_it_changed() -> None:
    bad = _conversation(2, when="not a time")
    for changed, fails in (([True, False], False), ([False, True], True)):
        parent = _Parent()
        producer = _Producer(parent.out, parent.answers, keep_raw=False)
        producer.batch_done(2, _batch(_conversation(1), bad))
        parent.frame()  # hashes
        producer.step()  # both normalized before the answer: the bad one's error is kept
        parent.answer(changed)
        if fails:
            with pytest.raises(NormalizeError, match="unparseable timestamp") as raised:
                producer.end(2, 0)
            assert raised.value.conversation_id == 2
        else:
            producer.end(2, 0)
            kind, (_, batch) = parent.frame()
            assert kind == "batch"
            assert [c.id for c in batch.conversations] == [1]
            assert parent.frame()[0] == "end"


def test_encoding_turns_lazy_after_a_mostly_unchanged_batch_and_eager_again() -> None:
    parent = _Parent()
    producer = _Producer(parent.out, parent.answers, keep_raw=False)
    assert producer.eager  # a first load: everything is new
    for first, flags in ((1, [False, False, True]), (4, [True, True, False])):
        producer.batch_done(first + 2, _batch(*(_conversation(c) for c in range(first, first + 3))))
        parent.frame()  # hashes
        parent.answer(flags)
        producer.end(first + 2, 0)
        kind, (_, batch) = parent.frame()
        assert kind == "batch"
        changed = [c for c, flag in zip(range(first, first + 3), flags, strict=True) if flag]
        assert [c.id for c in batch.conversations] == changed
        assert producer.eager is (sum(flags) >= 2)
        assert parent.frame()[0] == "end"


def test_a_stream_failing_mid_way_reports_the_previous_batchs_data_error_first() -> None:
    bad = _conversation(2, when="not a time")
    for flags, reported in (([True, True], True), ([True, False], False)):
        parent = _Parent()
        producer = _Producer(parent.out, parent.answers, keep_raw=False)
        batch = _batch(_conversation(1), bad)
        for entry in batch.values():
            producer.encode(entry)  # eager, as on a first load
        assert batch[2].result is not None and batch[2].result.__traceback__ is None
        producer.batch_done(2, batch)
        parent.frame()  # hashes
        parent.answer(flags)
        if reported:
            with pytest.raises(NormalizeError, match="unparseable timestamp"):
                producer.settle()
        else:
            producer.settle()  # unchanged: nothing to report, the stream's error stands


def test_a_window_starts_with_small_batches_that_double_up_to_the_batch_size() -> None:
    sizes = list(itertools.islice(batch_limits(500), 7))
    assert sizes == [64, 128, 256, 500, 500, 500, 500]
    assert list(itertools.islice(batch_limits(100), 3)) == [64, 100, 100]
    assert list(itertools.islice(batch_limits(10), 2)) == [10, 10]  # never above the setting
    assert list(itertools.islice(batch_limits(1), 2)) == [1, 1]
