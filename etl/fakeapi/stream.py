"""Streaming plumbing: content encoders, HTTP chunked sink and the JSON-array body writer."""

from __future__ import annotations

import enum
import threading
import time
import zlib
from collections.abc import Iterable
from typing import Protocol

CHUNK_BYTES = 64 * 1024


class Marker(enum.Enum):
    """Non-data items a (fault-transformed) element stream can carry."""

    ABORT = "abort"  # break the connection now (a broken chunked body)
    CUT_COMPRESSED = "cut"  # end the compressed stream without its trailer, chunked end is clean
    NO_CLOSE = "no_close"  # do not write the final "]"


Item = bytes | Marker


class Encoder(Protocol):
    """A Content-Encoding: compress incrementally, flush, finish."""

    header: str | None

    def compress(self, data: bytes) -> bytes: ...
    def sync(self) -> bytes: ...
    def finish(self) -> bytes: ...


class Identity:
    """No content encoding."""

    header: str | None = None

    def compress(self, data: bytes) -> bytes:
        return data

    def sync(self) -> bytes:
        return b""

    def finish(self) -> bytes:
        return b""


class Zlib:
    """gzip (wbits 31) or HTTP deflate, i.e. zlib-wrapped (wbits 15)."""

    def __init__(self, name: str, level: int = 1) -> None:
        self.header: str | None = name
        self._c = zlib.compressobj(level, zlib.DEFLATED, 31 if name == "gzip" else 15)

    def compress(self, data: bytes) -> bytes:
        return self._c.compress(data)

    def sync(self) -> bytes:
        return self._c.flush(zlib.Z_SYNC_FLUSH)

    def finish(self) -> bytes:
        return self._c.flush(zlib.Z_FINISH)


class Stacked:
    """Two encodings applied in turn (`Content-Encoding: gzip, gzip`)."""

    def __init__(self, inner: Encoder, outer: Encoder) -> None:
        self.inner, self.outer = inner, outer
        self.header: str | None = f"{inner.header}, {outer.header}"

    def compress(self, data: bytes) -> bytes:
        return self.outer.compress(self.inner.compress(data))

    def sync(self) -> bytes:
        return self.outer.compress(self.inner.sync()) + self.outer.sync()

    def finish(self) -> bytes:
        return self.outer.compress(self.inner.finish()) + self.outer.finish()


def choose_encoding(accept_encoding: str | None) -> str:
    """gzip if acceptable, else deflate, else identity (q=0 excludes)."""
    accepted: dict[str, float] = {}
    for part in (accept_encoding or "").split(","):
        name, _, params = part.strip().partition(";")
        q = 1.0
        for p in params.split(";"):
            key, _, value = p.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if name:
            accepted[name.strip().lower()] = q
    for enc in ("gzip", "deflate"):
        if accepted.get(enc, accepted.get("*", 0.0)) > 0:
            return enc
    return "identity"


def make_encoder(name: str) -> Encoder:
    return Identity() if name == "identity" else Zlib(name)


class Writable(Protocol):
    """A binary file-like object."""

    def write(self, data: bytes, /) -> int: ...
    def flush(self) -> None: ...


class Sink(Protocol):
    """Where encoded bytes go."""

    def write(self, data: bytes) -> None: ...
    def end(self) -> None: ...


class ChunkedSink:
    """Writes HTTP/1.1 chunks to a socket file, optionally trickling at a byte rate."""

    def __init__(
        self, wfile: Writable, stop: threading.Event, trickle_bytes_per_s: int | None = None
    ) -> None:
        self.wfile, self.stop, self.rate = wfile, stop, trickle_bytes_per_s
        self.bytes_out = 0

    def write(self, data: bytes) -> None:
        if not data:
            return
        if self.rate:
            self._trickle(data)
        else:
            self.wfile.write(b"%x\r\n%b\r\n" % (len(data), data))
        self.bytes_out += len(data)

    def _trickle(self, data: bytes) -> None:
        step = max(1, self.rate // 10) if self.rate else len(data)
        for i in range(0, len(data), step):
            if self.stop.is_set():
                raise ConnectionAbortedError("server stopping")
            piece = data[i : i + step]
            self.wfile.write(b"%x\r\n%b\r\n" % (len(piece), piece))
            self.wfile.flush()
            time.sleep(len(piece) / self.rate if self.rate else 0)

    def write_partial_chunk(self, data: bytes) -> None:
        """Announce a chunk of len(data)*2+1 bytes but send only data (then the caller hangs up)."""
        self.wfile.write(b"%x\r\n%b" % (2 * len(data) + 1, data))
        self.wfile.flush()

    def end(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class FileSink:
    """Writes encoded bytes to a file (for --save)."""

    def __init__(self, fh: Writable) -> None:
        self.fh = fh

    def write(self, data: bytes) -> None:
        self.fh.write(data)

    def end(self) -> None:
        self.fh.flush()


class BodyWriter:
    """Buffers raw body pieces to ~64 KB, encodes them and hands them to the sink."""

    def __init__(self, encoder: Encoder, sink: Sink, chunk_bytes: int = CHUNK_BYTES) -> None:
        self.encoder, self.sink, self.chunk_bytes = encoder, sink, chunk_bytes
        self._buf: list[bytes] = []
        self._size = 0
        self.raw_bytes = 0

    def add(self, piece: bytes) -> None:
        self._buf.append(piece)
        self._size += len(piece)
        if self._size >= self.chunk_bytes:
            self.flush_raw()

    def flush_raw(self) -> None:
        if self._buf:
            data = b"".join(self._buf)
            self._buf.clear()
            self.raw_bytes += self._size
            self._size = 0
            self.sink.write(self.encoder.compress(data))

    def finish(self) -> None:
        """Complete the body cleanly."""
        self.flush_raw()
        self.sink.write(self.encoder.finish())
        self.sink.end()

    def cut_compressed(self) -> None:
        """End the chunked body cleanly but leave the compressed stream without its end."""
        self.flush_raw()
        tail = self.encoder.sync()
        self.sink.write(tail[: max(0, len(tail) - 3)])
        self.sink.end()

    def pending_encoded(self) -> bytes:
        """Flush what is buffered through the encoder (sync flush) and return it unsent."""
        data = b"".join(self._buf)
        self._buf.clear()
        self._size = 0
        return self.encoder.compress(data) + self.encoder.sync()


def write_array(items: Iterable[Item], body: BodyWriter) -> Marker | None:
    """Write `[e1,e2,...]`; stops at ABORT / CUT_COMPRESSED markers and returns them."""
    close = True
    body.add(b"[")
    first = True
    for item in items:
        if isinstance(item, Marker):
            if item is Marker.NO_CLOSE:
                close = False
                continue
            return item
        if first:
            body.add(item)
            first = False
        else:
            body.add(b",")
            body.add(item)
    if close:
        body.add(b"]")
    return None
