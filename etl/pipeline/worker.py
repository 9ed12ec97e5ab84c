"""The forked worker's side: parse, hash, normalize and encode a window, batch by batch."""

from __future__ import annotations

import gc
import itertools
import os
import pickle
import select
import signal
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from etl.extract import ExportStream
from etl.load.batch import BatchEncoder, Prepared, prepare
from etl.normalize import normalize_conversation
from etl.normalize.digest import Digest, content_digest
from etl.normalize.errors import NormalizeError

HEADER = struct.Struct("<Q")
_PARENT_POLL_SECONDS = 0.25


@dataclass
class StreamEnd:
    """What the worker saw of the stream once it was read to the end."""

    received: int
    bytes_received: int


def mid_stream_threshold() -> int | None:
    """The count at which tests pause mid-stream (testhooks), so a batch can end exactly there."""
    wanted = os.environ.get("ETL_TEST_PAUSE_AT", "")
    if "mid-stream" not in {p.strip() for p in wanted.split(",")}:
        return None
    return int(os.environ.get("ETL_TEST_PAUSE_AFTER", "1") or 1)


def _watch_parent(parent: int) -> None:
    """Die with the parent: a SIGKILLed parent cannot kill us, so notice it is gone."""
    while True:
        time.sleep(_PARENT_POLL_SECONDS)
        if os.getppid() != parent:
            os._exit(1)


def _send(out: IO[bytes], message: tuple[str, Any]) -> None:
    frame = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    out.write(HEADER.pack(len(frame)))
    out.write(frame)
    out.flush()


def pack(flags: list[bool]) -> bytes:
    bits = bytearray((len(flags) + 7) // 8)
    for i, flag in enumerate(flags):
        if flag:
            bits[i >> 3] |= 1 << (i & 7)
    return bytes(bits)


def unpack(bits: bytes, count: int) -> list[bool]:
    return [bool(bits[i >> 3] >> (i & 7) & 1) for i in range(count)]


def worker_main(
    stream: ExportStream,
    write_fd: int,
    answer_fd: int,
    parent: int,
    batch_size: int,
    keep_raw: bool,
) -> None:
    # The parent owns Ctrl-C and SIGTERM handling and kills us; keep the default actions here.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    code = 0
    try:
        # Parsing allocates millions of short-lived, cycle-free objects: automatic collection
        # would spend a tenth of the worker's time scanning them (and everything inherited).
        gc.freeze()
        gc.disable()
        with os.fdopen(write_fd, "wb") as out:
            try:
                _produce(stream, out, _Answers(answer_fd), batch_size, keep_raw)
            except BaseException as exc:  # noqa: BLE001 - every failure goes to the parent
                _send(out, ("error", _portable(exc)))
    except BaseException:  # noqa: BLE001 - the parent is gone or the pipe broke: just leave
        code = 1
    finally:
        # Never run the parent's exit handlers or finalizers (its database connection!).
        os._exit(code)


def _portable(exc: BaseException) -> tuple[type[BaseException], tuple[Any, ...], dict[str, Any]]:
    state = dict(getattr(exc, "__dict__", {}))
    try:
        pickle.dumps((type(exc), exc.args, state))
        return type(exc), exc.args, state
    except Exception:  # noqa: BLE001 - unpicklable attributes: keep the type and message
        try:
            pickle.dumps(type(exc))
            return type(exc), (str(exc),), {}
        except Exception:  # noqa: BLE001 - a local class: say what it was
            return RuntimeError, (f"{type(exc).__name__}: {exc}",), {}


# Automatic garbage collection is off in the worker (see worker_main): parsed JSON has no
# reference cycles, and stored data errors drop their tracebacks (which would make one). This
# backstop collects every so many conversations, for a cycle nobody thought of.
_COLLECT_EVERY = 20_000


class _Answers:
    """The parent's answers to `hashes` frames, read without blocking until one is needed."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buffer = bytearray()

    def ready(self) -> bool:
        """Whether a whole answer has arrived (never blocks)."""
        while True:
            if self._complete():
                return True
            readable, _, _ = select.select([self._fd], [], [], 0)
            if not readable:
                return False
            if not self._read_some():
                return True  # the end of the pipe: `take` reports it

    def take(self, count: int) -> list[bool]:
        """The next answer (waiting for it): one flag per conversation of a batch of `count`."""
        while not self._complete():
            if not self._read_some():
                raise EOFError("the loading process stopped answering")
        (size,) = HEADER.unpack_from(self._buffer)
        if size != count:
            raise RuntimeError(f"answer for {size} conversations, the batch has {count}")
        end = HEADER.size + (size + 7) // 8
        flags = unpack(bytes(self._buffer[HEADER.size : end]), size)
        del self._buffer[:end]
        return flags

    def _complete(self) -> bool:
        if len(self._buffer) < HEADER.size:
            return False
        size: int = HEADER.unpack_from(self._buffer)[0]
        return len(self._buffer) >= HEADER.size + (size + 7) // 8

    def _read_some(self) -> bool:
        data = os.read(self._fd, 1 << 16)
        self._buffer += data
        return bool(data)


@dataclass(slots=True)
class _Entry:
    """One conversation of a batch: parsed, then encoded (or failed), then sent or dropped."""

    conversation: Any  # None once encoded or known unchanged
    digest: Digest
    result: Prepared | NormalizeError | None = None


_Batch = dict[int, _Entry]


@dataclass
class _Asked:
    """Batch N once its `(id, hash)` list is sent, until it is sent itself."""

    received: int  # conversations received up to the batch's end
    entries: list[_Entry]
    flags: list[bool] | None = None  # the parent's answer: which ones changed
    cursor: int = 0  # entries before it are encoded or skipped


class _Producer:
    """The worker's loop: parse batch N+1 while batch N's answer comes and N is sent.

    When batch N is parsed, its `(id, hash)` list goes to the parent and the worker parses on,
    checking for the answer between conversations without waiting (the parent may be busy
    loading an earlier batch). Conversations are encoded in one of two ways:
    - eagerly, right after parsing, while it is still in the CPU cache (a quarter cheaper than
      later) and its parsed form is released at once: while most conversations turn out
      changed, as on a first load;
    - lazily otherwise, as on a re-run: two of N's changed conversations (all of them until
      the answer is in) per conversation of N+1 parsed, so that unchanged ones are never
      encoded.
    A conversation that failed to normalize fails the window only if it changed. Batch(N) goes
    out as soon as it is complete, often mid-way through N+1; only when N+1 is parsed too does
    the worker wait for N's answer. So the parent's round trip never stalls the parse, and
    peak memory stays about one batch of parsed conversations whatever the window's size. The
    parent may answer N+1 before it loads N (decide allows that).
    """

    def __init__(self, out: IO[bytes], answers: _Answers, keep_raw: bool) -> None:
        self._out = out
        self._answers = answers
        self._keep_raw = keep_raw
        self._asked: _Asked | None = None
        self._encoder = BatchEncoder()
        self.eager = True  # until an answer says most conversations are unchanged

    def step(self) -> None:
        """Take N's answer if it is in; encode two of its conversations; send N if done."""
        asked = self._asked
        if asked is None:
            return
        if asked.flags is None and self._answers.ready():
            self._take_answer(asked)
        self._encode_next(asked)
        self._encode_next(asked)
        if asked.flags is not None and asked.cursor == len(asked.entries):
            self._send_batch(asked)

    def _take_answer(self, asked: _Asked) -> None:
        flags = self._answers.take(len(asked.entries))
        asked.flags = flags
        self.eager = 2 * sum(flags) >= len(flags)

    def encode(self, entry: _Entry) -> None:
        """Normalize and encode one conversation; keep a data error for when it counts."""
        try:
            normalized = normalize_conversation(
                entry.conversation, keep_raw=self._keep_raw, digest=entry.digest
            )
            entry.result = prepare(normalized, self._encoder.copy_format)
        except NormalizeError as exc:
            # Raised if the answer says it changed. Without its traceback, which would hold
            # this frame and the entry in a cycle that only the collector (off here) can free.
            entry.result = exc.with_traceback(None)
        entry.conversation = None

    def settle(self) -> None:
        """Finish the batch asked about, raising its data error if one of its changed has one.

        For a stream that fails mid-way: a conversation of the previous batch that cannot be
        loaded is reported first (a data error), as when batches were finished one by one,
        rather than depending on when the parent's answer came. Without one, the batch is
        sent as usual and the stream's error follows it.
        """
        try:
            self._finish()  # raises the data error, if there is one to raise
        except (EOFError, OSError, RuntimeError):
            pass  # the parent is gone: the stream's own error is the one to report

    def _encode_next(self, asked: _Asked) -> None:
        """Encode the next conversation of N that may be needed, if any."""
        entries, flags, at = asked.entries, asked.flags, asked.cursor
        while at < len(entries):
            entry = entries[at]
            at += 1
            if flags is not None and not flags[at - 1]:
                entry.conversation = entry.result = None  # unchanged: not needed
            elif entry.result is None:
                self.encode(entry)
                break
        asked.cursor = at

    def _send_batch(self, asked: _Asked) -> None:
        assert asked.flags is not None
        self._asked = None
        for entry, changed in zip(asked.entries, asked.flags, strict=True):
            if changed:
                if isinstance(entry.result, NormalizeError):
                    raise entry.result
                assert entry.result is not None
                self._encoder.add_prepared(entry.result)
        _send(self._out, ("batch", (asked.received, self._encoder.finish())))

    def _finish(self) -> None:
        """Wait for N's answer if need be, encode what is left of N and send it."""
        asked = self._asked
        if asked is None:
            return
        if asked.flags is None:
            self._take_answer(asked)
        while asked.cursor < len(asked.entries):
            self._encode_next(asked)
        self._send_batch(asked)

    def batch_done(self, received: int, batch: _Batch) -> None:
        """Batch N+1 is parsed: ask about it, finish and send N, and parse on."""
        _send(self._out, ("hashes", [(e.digest.id, e.digest.content_hash) for e in batch.values()]))
        self._finish()
        self._asked = _Asked(received, list(batch.values()))

    def end(self, received: int, bytes_received: int) -> None:
        self._finish()
        _send(self._out, ("end", StreamEnd(received, bytes_received)))


# The first batch of a window is small so the database starts work within milliseconds instead
# of waiting for a whole batch to be parsed; each next one doubles up to the batch size. On
# windows of a few hundred conversations (a nightly run in hourly windows, or a backfill in 6h
# windows) that wait was most of the window: nothing overlapped.
FIRST_BATCH = 64


def batch_limits(batch_size: int) -> Iterator[int]:
    """Sizes of a window's successive batches: FIRST_BATCH, doubling, then batch_size."""
    limit = min(FIRST_BATCH, batch_size)
    while limit < batch_size:
        yield limit
        limit *= 2
    yield from itertools.repeat(batch_size)


def _produce(
    stream: ExportStream, out: IO[bytes], answers: _Answers, batch_size: int, keep_raw: bool
) -> None:
    cut_at = mid_stream_threshold()
    producer = _Producer(out, answers, keep_raw)
    finite_floats = stream.finite_floats
    limits = batch_limits(batch_size)
    limit = next(limits)
    batch: _Batch = {}
    received = 0
    conversations = iter(stream)
    while True:
        try:
            conversation = next(conversations)
        except StopIteration:
            break
        except Exception:
            producer.settle()
            raise
        entry = _Entry(conversation, content_digest(conversation, finite_floats=finite_floats))
        if producer.eager:
            producer.encode(entry)
        # A later copy of the same conversation in the window wins (as in WindowWriter).
        batch.pop(entry.digest.id, None)
        batch[entry.digest.id] = entry
        received += 1
        producer.step()
        if len(batch) >= limit or received == cut_at:
            producer.batch_done(received, batch)
            batch = {}
            limit = next(limits)
        if received % _COLLECT_EVERY == 0:
            gc.collect()
    if batch:
        producer.batch_done(received, batch)
    producer.end(received, stream.bytes_received)
