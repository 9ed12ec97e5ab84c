"""The worker's side of the answer pipe: never blocks to check, frames split or merged."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from etl.pipeline.parallel import _HEADER, _Answers, _pack


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
    return _HEADER.pack(len(flags)) + _pack(flags)


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
