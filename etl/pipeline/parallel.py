"""A forked worker parses, normalizes and COPY-encodes a window while this process loads it."""

from __future__ import annotations

import os
import pickle
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any

from etl.errors import EtlError
from etl.extract import ExportStream
from etl.extract.errors import NumberOverflowError
from etl.load.batch import EncodedBatch
from etl.load.writer import WindowWriter
from etl.normalize import normalize_conversation
from etl.normalize.digest import content_digest
from etl.pipeline.progress import Progress
from etl.pipeline.worker import (
    HEADER,
    StreamEnd,
    mid_stream_threshold,
    pack,
    worker_main,
)
from etl.testhooks import pause_point


class WorkerFailed(EtlError):
    """The parsing worker died without reporting an error (killed, out of memory)."""


class ParallelFeed:
    """Iterate batches of encoded conversations produced by a forked worker (see worker.py).

    The worker inherits the open stream (positioned after query_info) and is the only process
    that reads it from then on. For each batch it sends the `(id, content_hash)` list first;
    `decide` (run here, where the database is) answers which ones changed, through a second
    pipe, and the worker sends the batch's changed conversations encoded: a re-run costs
    little more than the parse and the hash. The worker parses on while it waits for an
    answer, so this process may answer batch N+1 before it loads batch N (`decide` allows
    that) and the two processes overlap. Frames are pickled; a pipe holds one frame at a time,
    so the worker runs at most one batch ahead and memory stays flat. Closing the feed
    (normally, on error or on KeyboardInterrupt) kills and reaps the worker.
    """

    def __init__(
        self,
        stream: ExportStream,
        *,
        batch_size: int,
        keep_raw: bool,
        decide: Callable[[Sequence[tuple[int, str]]], list[bool]],
    ) -> None:
        self._stream = stream
        self._decide = decide
        read_fd, write_fd = os.pipe()
        answer_read_fd, answer_write_fd = os.pipe()
        parent = os.getpid()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the worker: never returns
            os.close(read_fd)
            os.close(answer_write_fd)
            worker_main(stream, write_fd, answer_read_fd, parent, batch_size, keep_raw)
        os.close(write_fd)
        os.close(answer_read_fd)
        self._pid: int | None = pid
        self._pipe: IO[bytes] = os.fdopen(read_fd, "rb", buffering=1 << 20)
        self._answers: IO[bytes] = os.fdopen(answer_write_fd, "wb")
        self.end: StreamEnd | None = None

    def __iter__(self) -> Iterator[tuple[int, EncodedBatch]]:
        """(conversations received so far, the changed ones encoded), until the stream's end."""
        while True:
            kind, payload = self._receive()
            if kind == "hashes":
                self._answer(self._decide(payload))
            elif kind == "batch":
                yield payload
                # Not held while the next frame is read and unpickled: two batches at once
                # made peak memory grow with the window's size.
                del payload
            elif kind == "end":
                self.end = payload
                return
            else:
                raise self._error(payload)

    def _answer(self, flags: list[bool]) -> None:
        # One bit per conversation: at most two answers wait in the pipe (64 KiB), so this
        # write cannot block for any batch size below 256k conversations.
        try:
            self._answers.write(HEADER.pack(len(flags)) + pack(flags))
            self._answers.flush()
        except BrokenPipeError:
            pass  # the worker is gone: the next _receive says how

    def _receive(self) -> tuple[str, Any]:
        header = self._pipe.read(HEADER.size)
        if len(header) == HEADER.size:
            (size,) = HEADER.unpack(header)
            frame = self._pipe.read(size)
            if len(frame) == size:
                message: tuple[str, Any] = pickle.loads(frame)
                return message
        status = self._reap()
        raise WorkerFailed(
            f"the worker reading the export stream stopped without a word ({status}); "
            "nothing of the window was committed"
        )

    def _error(self, payload: Any) -> BaseException:
        cls, args, state = payload
        # Re-created without __init__: same class, message (args) and attributes as raised.
        error: BaseException = cls.__new__(cls)
        error.args = args
        error.__dict__.update(state)
        if isinstance(error, NumberOverflowError):
            # The stream's callback ran in the worker; the client must learn it here.
            on_overflow = getattr(self._stream, "_on_overflow", None)
            if on_overflow is not None:
                on_overflow()
        return error

    def _reap(self) -> str:
        if self._pid is None:
            return "already reaped"
        pid, self._pid = self._pid, None
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status):
            return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
        return f"exit status {os.waitstatus_to_exitcode(status)}"

    def close(self) -> None:
        if self._pid is not None:
            try:
                os.kill(self._pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._reap()
        self._pipe.close()
        try:
            self._answers.close()
        except BrokenPipeError:
            pass

    def __enter__(self) -> ParallelFeed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def parallel_enabled(writer: WindowWriter) -> bool:
    """The worker path is the default on PostgreSQL; ETL_PARALLEL=0 keeps everything in-process."""
    return writer.accepts_encoded and os.environ.get("ETL_PARALLEL", "1") != "0"


def feed_in_process(
    stream: ExportStream, writer: WindowWriter, progress: Progress, keep_raw: bool
) -> StreamEnd:
    """Parse, normalize and write in this process (SQLite, and the fallback)."""
    received = 0
    finite_floats = stream.finite_floats
    for conversation in stream:
        digest = content_digest(conversation, finite_floats=finite_floats)
        writer.add(normalize_conversation(conversation, keep_raw=keep_raw, digest=digest))
        received += 1
        if received % 200 == 0:
            progress.conversations(200)
        pause_point("mid-stream", received)  # tests only: ETL_TEST_PAUSE_AT
    writer.flush()
    progress.conversations(received % 200)
    return StreamEnd(received, stream.bytes_received)


def feed_parallel(
    stream: ExportStream, writer: WindowWriter, progress: Progress, keep_raw: bool, batch_size: int
) -> StreamEnd:
    """Let a worker parse and encode while this process runs the database protocol."""
    cut_at = mid_stream_threshold()
    done = 0
    with ParallelFeed(
        stream, batch_size=batch_size, keep_raw=keep_raw, decide=writer.decide
    ) as feed:
        for received, batch in feed:
            if cut_at is not None and done < cut_at <= received:
                pause_point("mid-stream", cut_at)  # tests only: ETL_TEST_PAUSE_AT
            progress.conversations(received - done)
            done = received
            writer.load_decided(batch)
            del batch  # not held while the next batch is received (see ParallelFeed)
        assert feed.end is not None
    writer.flush()
    return feed.end
