"""The loading thread: it turns each batch into rows and merges them while the caller reads on.

The caller (the run loop) takes each batch off the extract worker's pipe as soon as it comes,
so that the worker, which reads the export and normalizes most of what a first load writes,
can build the next one while the thread merges (it waits only once a batch is queued); the
thread turns the batch into rows (decoding what the worker normalized, normalizing the rest
but what is stored as it is: `rows_of`) and merges them. A COPY ends by waiting for the
server to parse, index and write what it was sent: threads, because the thread spends that
time waiting on the connection, without the GIL.

Memory stays flat and the same from window to window: one batch as rows (the thread's) and
the next as it crossed the pipe (the caller's: JSON text, and with a quarantine the
conversations' own text too), whichever of the worker and the warehouse is ahead.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Final

from etl import testhooks
from etl.load.loader import WindowLoader
from etl.normalize import NormalizedConversation
from etl.normalize.rejects import Rejected

_END: Final = None
_Batch = tuple[Any, list[Rejected]]
# A batch as received, and its rejects (to which a conversation that cannot be normalized is
# added, with a quarantine) -> its rows.
RowsOf = Callable[[Any, list[Rejected]], Sequence[NormalizedConversation]]


class LoadingThread:
    """For each batch `put`, in order, in one thread: `loader.merge(rows_of(batch, rejects),
    rejects)`.

    The loader's connection belongs to the thread from the start of the block until `drain()`
    returns or the block ends: the caller must not use it meanwhile. An error in the thread is
    raised in the caller at its next `put` or `drain`; after one, the thread skips the rest.
    The caller holds one batch (as received) while the thread merges the one before.
    """

    def __init__(self, loader: WindowLoader, rows_of: RowsOf) -> None:
        self._loader = loader
        self._rows_of = rows_of
        self._batches: queue.Queue[_Batch | None] = queue.Queue(1)
        self._error: BaseException | None = None
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="etl-load", daemon=True)

    def __enter__(self) -> LoadingThread:
        self._thread.start()
        return self

    def put(self, batch: Any, rejects: list[Rejected] | None = None) -> None:
        """Hand a batch (and the conversations quarantined from it) over; returns once the
        thread has taken it (after the batch before)."""
        self._raise_error()
        self._batches.put((batch, [] if rejects is None else rejects))
        self._batches.join()  # so at most two batches are held: this one and the next

    def drain(self) -> None:
        """Wait until every batch put is merged; raise the thread's error if there was one."""
        self._stop()
        self._raise_error()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        # Also on an error or KeyboardInterrupt in the caller: the connection may be rolled
        # back only once the thread has let go of it (after the batch it is merging).
        self._stopping = et is not None
        testhooks.wake(self._thread)
        self._stop()
        # The thread's error came from a batch read before whatever the caller met since (a
        # stream that broke later, the worker's error on a later conversation): it is the one
        # to report, as a data error must not pass for a retriable stream error. An interrupt
        # stays an interrupt.
        if isinstance(ev, Exception):
            self._raise_error()

    def _stop(self) -> None:
        if self._thread.is_alive():
            self._batches.put(_END)
            self._thread.join()

    def _raise_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            self._stopping = True
            raise error

    def _run(self) -> None:
        while (batch := self._batches.get()) is not _END:
            self._batches.task_done()  # taken: the caller may go on to the next batch
            if self._stopping or self._error is not None:
                continue  # let the caller's puts through until it stops
            try:
                self._loader.merge(self._rows_of(*batch), batch[1])
            except BaseException as exc:  # noqa: BLE001 - raised in the caller
                self._error = exc
            # Let go of the batch now, not at the next one: the caller may be holding that
            # one already, and both would be held for no use.
            batch = None
