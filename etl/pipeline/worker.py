"""The extract worker: a forked process reads a window's export and sends it on, in batches.

Data flows one way. The worker owns the export stream (downloading, decompressing, cutting
and parsing it), hashes each conversation and, while the window's conversations are being
loaded, normalizes them too; the loading process receives batches through a
`multiprocessing` pipe and its loading thread (pipeline.loading) makes their rows and keeps
the new and changed conversations.

Where a conversation is normalized follows what the window's loading has done so far
(`ExtractWorker.report_loaded_share`), as normalizing takes longer than anything else either
process does with it:
- mostly loaded (a first load, a backfill): here, and its rows cross as orjson's text
  (normalize.wire; one that is not plain, or whose rows orjson cannot write, crosses as its
  text). The loading thread then only decodes and merges, and seldom waits for the GIL.
- mostly unchanged (a re-run): its text crosses, and the loading thread normalizes only
  what the warehouse does not hold as it is (WindowLoader.unchanged, one query a batch):
  normalizing here would make rows only for the loading process to drop them.
Either way the rows are those of `normalize_conversation`; only the process differs.

A conversation's text is what orjson parsed it from, or orjson's or the standard library's
JSON for one the splitter did not cut out (`_as_text`).
"""

from __future__ import annotations

import ctypes
import gc
import itertools
import json
import mmap
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import orjson

from etl.errors import EtlError
from etl.extract import ExportStream
from etl.extract.split import finer_than_microseconds
from etl.normalize import (
    Digest,
    NormalizedConversation,
    NormalizeError,
    content_digest,
    normalize_conversation,
)
from etl.normalize.digest import TOO_DEEP
from etl.normalize.rejects import Rejected, rejected
from etl.normalize.wire import encoded

# A conversation as it crosses: its digest; its text, JSON for orjson (bytes) or for the
# standard library (str), or None when its rows crossed and no quarantine needs the text;
# its 0-based position in the export stream; its rows (normalize.wire) when the worker
# normalized it.
Extracted = tuple[Digest, bytes | str | None, int, bytes | None]
# A batch: the conversations, and those quarantined on the way (pipeline.on_bad_conversation).
Batch = tuple[list[Extracted], list[Rejected]]

_exact_json = json.JSONEncoder(ensure_ascii=True, check_circular=False).encode

# Fork, not spawn: the worker takes over the open stream (its HTTP response or file) as it is.
_CONTEXT = multiprocessing.get_context("fork")
_PARENT_POLL_SECONDS = 0.25
_STOP_POLL_SECONDS = 0.25
# Windows load in threads, each with a worker process; their starts, waits and closes take
# turns. A worker forked while another window's pipe is being set up would inherit that pipe's
# sending end, and the other window would then wait on it for ever should its own worker die
# without a word (the pipe never reads EOF). And `Process.start` reaps every finished child of
# the process (multiprocessing's `_cleanup`): run beside another thread's `join`, both call
# waitpid on one child, one gets ECHILD, and that Process reads as still running for good
# ("Cannot close a process while it is still running").
_PROCESSES = threading.Lock()

# A batch is normalized here when at least this share of the window's conversations so far
# were loaded (new or changed): see the module's docstring.
NORMALIZE_IN_WORKER_FROM_SHARE = 0.5

# A window's first batch is small so that the warehouse starts within milliseconds instead of
# waiting for a whole batch to be read; each next one doubles up to the batch size. On windows
# of a few hundred conversations that wait would be most of the window.
FIRST_BATCH = 64


class WorkerFailed(EtlError):
    """The extract worker died without reporting an error (killed, out of memory)."""


@dataclass(frozen=True)
class StreamEnd:
    """What the worker saw of the stream once it was read to the end."""

    received: int
    bytes_received: int
    post_query_info: dict[str, Any] | None
    unknown_elements: list[Any]
    # Times with digits finer than a microsecond, which are stored cut to the microsecond.
    finer_than_microseconds: int = 0


def batch_limits(batch_size: int) -> Iterator[int]:
    """Sizes of a window's successive batches: FIRST_BATCH, doubling, then batch_size."""
    limit = min(FIRST_BATCH, batch_size)
    while limit < batch_size:
        yield limit
        limit *= 2
    yield from itertools.repeat(batch_size)


class ExtractWorker:
    """Iterate a window's batches, extracted by a forked worker; `end` is set at the end.

    The pipe holds about one batch: the worker reads at most a batch ahead, so memory stays
    flat whatever the window's size. Closing (normally, on error or on KeyboardInterrupt) kills
    and reaps the worker. With `quarantine`, a conversation that cannot be hashed or
    normalized here comes in the batch's rejects instead of failing the window. `keep_raw`:
    see normalize_conversation. `loaded_share`: what to expect until told otherwise
    (`report_loaded_share`).
    """

    def __init__(
        self,
        stream: ExportStream,
        batch_size: int,
        *,
        quarantine: bool = False,
        keep_raw: bool = False,
        loaded_share: float = 1.0,
        stop: threading.Event | None = None,
    ) -> None:
        self._stop = stop
        with _PROCESSES:
            # Anonymous shared memory, which the worker reads as each batch starts (written by
            # one process, read by the other, one aligned double: no lock). Not a
            # multiprocessing Value: that one needs /dev/shm or leaves a temporary directory
            # behind when the process ends with os._exit, as `etl` does.
            self._shared = mmap.mmap(-1, ctypes.sizeof(ctypes.c_double))
            self._loaded_share = ctypes.c_double.from_buffer(self._shared)
            self._loaded_share.value = loaded_share
            self._receiver, sender = _CONTEXT.Pipe(duplex=False)
            self._process = _CONTEXT.Process(
                target=_extract,
                args=(
                    stream,
                    sender,
                    self._receiver,
                    batch_size,
                    os.getpid(),
                    _WorkerOptions(quarantine, keep_raw, self._loaded_share),
                ),
                name="etl-extract",
                daemon=True,
            )
            self._process.start()
            sender.close()
        self.end: StreamEnd | None = None

    def __iter__(self) -> Iterator[Batch]:
        while True:
            if self._stop is not None:
                while not self._receiver.poll(_STOP_POLL_SECONDS):
                    if self._stop.is_set():
                        raise KeyboardInterrupt("stopped")
            try:
                kind, payload = self._receiver.recv()
            except EOFError:
                raise WorkerFailed(
                    f"the worker reading the export stream stopped without a word "
                    f"({self._status()}); nothing of the window was committed"
                ) from None
            if kind == "batch":
                yield payload
            elif kind == "end":
                self.end = payload
                return
            else:
                raise payload

    def report_loaded_share(self, share: float) -> None:
        """Tell the worker what share of the window's conversations were loaded so far."""
        self._loaded_share.value = share

    def _status(self) -> str:
        with _PROCESSES:
            self._process.join(timeout=5)
            code = self._process.exitcode
        if code is not None and code < 0:
            return f"killed by {signal.Signals(-code).name}"
        return f"exit status {code}"

    def close(self) -> None:
        with _PROCESSES:
            if self._process.is_alive():
                self._process.kill()
            self._process.join()
            self._process.close()
        self._receiver.close()

    def __enter__(self) -> ExtractWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class _WorkerOptions:
    quarantine: bool
    keep_raw: bool
    loaded_share: ctypes.c_double  # in memory shared with the parent


def _extract(
    stream: ExportStream,
    out: Connection,
    parents_end: Connection,
    batch_size: int,
    parent: int,
    options: _WorkerOptions,
) -> None:
    """The worker: read, hash, maybe normalize, and send; every failure goes to the parent
    as an error."""
    # Only the parent reads: when it dies, a send fails at once (EPIPE) instead of waiting.
    parents_end.close()
    gc.freeze()  # what the parent left behind is never garbage here: do not scan it again
    # The parent owns Ctrl-C and SIGTERM handling and kills us; keep the default actions here.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    batch: list[Extracted] = []
    rejects: list[Rejected] = []
    in_batch: set[int] = set()  # the conversation ids of `batch` and `rejects`
    finer = 0
    try:
        limits = batch_limits(batch_size)
        limit = next(limits)
        finite_floats = stream.finite_floats
        quarantine, keep_raw = options.quarantine, options.keep_raw
        normalizing = True
        for conversation, text in stream.conversations():
            position = stream.received - 1
            cid = conversation.get("id") if conversation.__class__ is dict else None
            if cid.__class__ is int and cid in in_batch:
                # A conversation that comes again starts a new batch: a batch holds one copy
                # of each, and the copies are merged in stream order, each with the batch it
                # came in, so that what is stored, quarantined and counted is the same
                # whatever the batch size (docs/schema.md, the quarantine).
                out.send(("batch", (batch, rejects)))
                batch, rejects = [], []
                in_batch.clear()
                limit = next(limits)
            if cid.__class__ is int:
                in_batch.add(cid)
            if not batch and not rejects:
                normalizing = options.loaded_share.value >= NORMALIZE_IN_WORKER_FROM_SHARE
            sent: bytes | str | None = text
            try:
                digest, sent, _, _ = as_sent(
                    conversation, text, finite_floats=finite_floats, position=position
                )
                finer += finer_than_microseconds(
                    sent if isinstance(sent, bytes) else sent.encode("utf-8", "surrogatepass")
                )
                rows = None
                if normalizing and digest.plain_rows:
                    rows = _rows(
                        normalize_conversation(conversation, keep_raw=keep_raw, digest=digest)
                    )
                if rows is None:
                    batch.append((digest, sent, position, None))
                else:
                    batch.append((digest, sent if quarantine else None, position, rows))
            except NormalizeError as exc:
                if not quarantine:
                    raise
                # The same text as the loading process would keep, had it normalized it.
                rejects.append(rejected(position, conversation, sent, exc.what))
            if len(batch) + len(rejects) >= limit:
                out.send(("batch", (batch, rejects)))
                batch, rejects = [], []
                in_batch.clear()
                limit = next(limits)
        if batch or rejects:
            out.send(("batch", (batch, rejects)))
        end = StreamEnd(
            stream.received,
            stream.bytes_received,
            stream.post_query_info,
            stream.unknown_elements,
            finer,
        )
        out.send(("end", end))
    except BrokenPipeError:
        return  # the parent is gone
    except Exception as exc:  # noqa: BLE001 - every failure goes to the parent
        # What was read before the failure goes first, so that a conversation that cannot be
        # loaded is reported before a stream that broke after it.
        _send_error(out, (batch, rejects), exc)


def _rows(normalized: NormalizedConversation) -> bytes | None:
    """The rows to send (normalize.wire), or None when orjson cannot write them: a plain
    conversation's JSON sits deeper in its rows than in itself (an unknown key in `extra`,
    the whole conversation in `raw`), beyond the depth orjson writes. Its text goes instead."""
    try:
        return encoded(normalized)
    except orjson.JSONEncodeError:
        return None


def as_sent(
    conversation: dict[str, Any],
    text: bytes | None = None,
    *,
    finite_floats: bool = False,
    position: int = 0,
) -> tuple[Digest, bytes | str, int, None]:
    """A conversation as the worker sends it for the loading process to normalize: hashed,
    with `text` (what orjson parsed it from) or, without one, JSON made here (`_as_text`).
    `finite_floats`: see content_digest."""
    digest = content_digest(conversation, finite_floats=finite_floats, position=position)
    return digest, text if text is not None else _as_text(conversation, digest), position, None


def _as_text(conversation: dict[str, Any], digest: Digest) -> bytes | str:
    """A conversation the splitter did not cut out (the body's last one, or one parsed exactly)
    as JSON that gives it back exactly: orjson's where the hash found it plain, else the
    standard library's (integers beyond 64 bits, lone surrogates, nesting orjson refuses)."""
    if digest.plain:
        return orjson.dumps(conversation)
    try:
        return _exact_json(conversation)
    except RecursionError:
        raise NormalizeError(TOO_DEEP, conversation_id=digest.id) from None


def _send_error(out: Connection, batch: Batch, exc: Exception) -> None:
    try:
        if batch[0] or batch[1]:
            out.send(("batch", batch))
        try:
            out.send(("error", exc.with_traceback(None)))
        except Exception:  # noqa: BLE001 - it does not pickle: keep its class name and message
            out.send(("error", WorkerFailed(f"{type(exc).__name__}: {exc}")))
    except BrokenPipeError:
        pass


def _exit_with_parent(parent: int) -> None:
    """Die with the parent: a SIGKILLed parent cannot kill us, so notice it is gone."""
    while True:
        time.sleep(_PARENT_POLL_SECONDS)
        if os.getppid() != parent:
            os._exit(1)
