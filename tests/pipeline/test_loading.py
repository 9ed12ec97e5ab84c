"""The loading thread: batches merged in order, errors raised in the caller, a clean stop."""

from __future__ import annotations

import gc
import threading
import time
import weakref
from typing import Any

import pytest

from etl.pipeline.loading import LoadingThread


def _as_is(batch: Any, rejects: Any) -> Any:
    return batch


class _Recorder:
    """Stands in for a WindowLoader: records what it merged, and in which thread."""

    def __init__(self, fail_on: int | None = None, gate: threading.Event | None = None) -> None:
        self.merged: list[Any] = []
        self.threads: set[int] = set()
        self._fail_on = fail_on
        self._gate = gate

    def merge(self, batch: Any, rejects: Any = ()) -> None:
        if self._gate is not None:
            self._gate.wait(5)
        self.threads.add(threading.get_ident())
        if batch == self._fail_on:
            raise ValueError(f"batch {batch} refused")
        self.merged.append(batch)


def test_batches_are_merged_in_order_in_another_thread() -> None:
    loader = _Recorder()
    with LoadingThread(loader, _as_is) as loading:  # type: ignore[arg-type]
        for batch in range(10):
            loading.put(batch)
        loading.drain()
    assert loader.merged == list(range(10))
    assert loader.threads and threading.get_ident() not in loader.threads


def test_an_error_in_the_thread_is_raised_in_the_caller_and_the_rest_is_skipped() -> None:
    loader = _Recorder(fail_on=2)
    with pytest.raises(ValueError, match="batch 2 refused"):
        with LoadingThread(loader, _as_is) as loading:  # type: ignore[arg-type]
            for batch in range(6):
                loading.put(batch)
            loading.drain()
    assert loader.merged == [0, 1]


def test_an_error_in_the_caller_waits_for_the_batch_in_hand() -> None:
    """The connection may be rolled back only once the thread has let go of it."""
    gate = threading.Event()
    loader = _Recorder(gate=gate)
    loading = LoadingThread(loader, _as_is)  # type: ignore[arg-type]
    with pytest.raises(KeyboardInterrupt):
        with loading:
            loading.put(0)  # taken by the thread, which waits at the gate
            threading.Timer(0.2, gate.set).start()
            raise KeyboardInterrupt
    assert loader.merged == [0]  # finished before the block ended
    assert not loading._thread.is_alive()


def test_put_returns_once_the_thread_took_the_batch_so_two_at_most_are_held() -> None:
    gate = threading.Event()
    loader = _Recorder(gate=gate)
    with LoadingThread(loader, _as_is) as loading:  # type: ignore[arg-type]
        loading.put(0)  # taken at once
        second = threading.Thread(target=loading.put, args=(1,))
        second.start()
        second.join(0.3)
        assert second.is_alive()  # waits while batch 0 is merged
        gate.set()
        second.join(5)
        assert not second.is_alive()
        loading.drain()
    assert loader.merged == [0, 1]


class _Batch(list[int]):
    """A batch that can be watched with a weak reference."""


def test_a_merged_batch_is_let_go_before_the_next_one_comes() -> None:
    # The caller builds the next batch while the thread waits for it: the rows merged last
    # must not stay alive meanwhile, or two batches would be held where one is needed.
    merged = threading.Event()

    class _Merger:
        def merge(self, batch: Any, rejects: Any = ()) -> None:
            merged.set()

    batch = _Batch([1, 2, 3])
    watched = weakref.ref(batch)
    with LoadingThread(_Merger(), _as_is) as loading:  # type: ignore[arg-type]
        loading.put(batch)
        del batch
        assert merged.wait(5)
        for _ in range(100):  # the thread drops it right after merge returns
            gc.collect()
            if watched() is None:
                break
            time.sleep(0.01)
        assert watched() is None
        loading.drain()


def test_each_batch_is_turned_into_rows_in_the_thread_with_its_rejects() -> None:
    """The caller only hands the batch over as received; the rows are made in the thread,
    which may add to the batch's rejects before merging both."""
    made_in: set[int] = set()

    def rows_of(batch: Any, rejects: list[Any]) -> Any:
        made_in.add(threading.get_ident())
        rejects.append(f"bad {batch}")
        return [batch * 10]

    merged: list[Any] = []

    class _Merger:
        def merge(self, rows: Any, rejects: Any = ()) -> None:
            merged.append((rows, list(rejects)))

    with LoadingThread(_Merger(), rows_of) as loading:  # type: ignore[arg-type]
        loading.put(1, ["quarantined on the way"])
        loading.put(2)
        loading.drain()
    assert merged == [([10], ["quarantined on the way", "bad 1"]), ([20], ["bad 2"])]
    assert made_in and threading.get_ident() not in made_in


def test_the_threads_error_is_raised_over_one_the_caller_met_later() -> None:
    """A batch that could not be merged was read before whatever the caller met since (a
    stream that broke after it): its error, a data error, is the one to report."""
    loader = _Recorder(fail_on=1)
    with pytest.raises(ValueError, match="batch 1 refused") as info:
        with LoadingThread(loader, _as_is) as loading:  # type: ignore[arg-type]
            loading.put(0)
            loading.put(1)
            raise ConnectionError("the stream broke after batch 1")
    assert isinstance(info.value.__context__, ConnectionError)


def test_an_interrupt_stays_an_interrupt_whatever_the_thread_met() -> None:
    loader = _Recorder(fail_on=0)
    with pytest.raises(KeyboardInterrupt):
        with LoadingThread(loader, _as_is) as loading:  # type: ignore[arg-type]
            loading.put(0)
            raise KeyboardInterrupt
