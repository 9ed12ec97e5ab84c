"""One export body as a stream: query_info, the conversations as parsed, post_query_info."""

from __future__ import annotations

import io
import logging
import math
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import IO, Any

import ijson
import requests

from etl.extract.decode import DecodedReader
from etl.extract.errors import (
    BrokenStreamError,
    ExactParseNeeded,
    ExportDataError,
    ResponseTooLarge,
)
from etl.extract.guards import (
    PARSE_READ,
    LoneSurrogate,
    Prefixed,
    SurrogateGuard,
    transport_guard,
)
from etl.extract.split import Element, split_elements
from etl.windows import Window

log = logging.getLogger(__name__)

_CHUNK = 64 * 1024  # raw body bytes per network read
# What the pure-Python parser reads at a time (it has none of yajl's cache effect: see guards.py).
_PARSE_BUFFER = 1024 * 1024
_warned_backend = False


# Python refuses int <-> str conversions beyond 4,300 digits (CVE-2020-10735: they take
# quadratic time). Windows re-read for integers beyond 64 bits may keep integers this long exactly
# (in JSON columns); a longer one is refused as a data error. Set at import: such an integer is
# parsed, hashed and written as text in both the extract worker and the loading process.
MAX_INTEGER_DIGITS = 10_000
if 0 < sys.get_int_max_str_digits() < MAX_INTEGER_DIGITS:
    sys.set_int_max_str_digits(MAX_INTEGER_DIGITS)
_LONG_INTEGER = re.compile(r"Unexpected symbol '(-?[0-9]+)'")
# A number beyond a double's range, as yajl and ijson's pure-Python parser report it (the
# latter only as a symbol it could not read).
_FLOAT_OVERFLOW = re.compile(
    r"numeric \(floating point\) overflow|Unexpected symbol '(-?[0-9.]+[eE][-+]?[0-9]+)'"
)


def _ijson_backend(pure_python: bool = False) -> Any:
    global _warned_backend
    if pure_python:
        return ijson.get_backend("python")
    try:
        return ijson.get_backend("yajl2_c")
    except ImportError:
        if not _warned_backend:
            _warned_backend = True
            log.warning(
                "ijson's C backend (yajl2_c) is not available: parsing will be several times slower"
            )
        return ijson


class ExportStream:
    """One export body: `query_info` up front, conversations as iterated, then `post_query_info`.

    Iterating to the end checks the stream is complete; any gap raises BrokenStreamError.
    Conversations are parsed by orjson where the body allows (see split_elements; `split=False`
    leaves everything to ijson), by yajl through ijson otherwise, and by ijson's pure-Python
    parser when a window is re-read for what yajl cannot represent (`pure_python`).
    """

    def __init__(
        self,
        reader: Any,
        window: Window | None,
        *,
        on_close: Any = None,
        source: str | None = None,
        pure_python: bool = False,
        split: bool = True,
    ) -> None:
        # What errors name: the window, or the file for saved exports.
        self.source: Window | str | None = window if window is not None else source
        self._reader = reader
        self._on_close = on_close
        backend = _ijson_backend(pure_python)
        # yajl refuses NaN, Infinity and numbers that overflow a double: every float is finite.
        self.finite_floats: bool = backend.backend_name == "yajl2_c"
        self._guard: SurrogateGuard | None = None
        self._items: Iterator[Element]
        if pure_python:
            items = backend.items(reader, "item", use_float=True, buf_size=_PARSE_BUFFER)
            self._items = ((item, None) for item in items)
        elif not split:  # ijson for everything (what split_elements falls back to)
            self._items = ((item, None) for item in self._fallback(backend, b""))
        else:
            self._items = split_elements(
                reader, lambda prefix: self._fallback(backend, prefix), lambda p: _exact(backend, p)
            )
        self.query_info: dict[str, Any] = {}
        self.post_query_info: dict[str, Any] | None = None
        # Top-level elements of a type this version does not know, kept whole for the run log.
        self.unknown_elements: list[Any] = []
        self.received = 0
        self.complete = False
        self._read_query_info()

    def _fallback(self, backend: Any, prefix: bytes) -> Iterator[Any]:
        """ijson over `prefix` and the rest of the body (see split_elements)."""
        self._guard = SurrogateGuard(Prefixed(prefix, self._reader))
        items: Iterator[Any] = backend.items(
            self._guard, "item", use_float=True, buf_size=PARSE_READ
        )
        return items

    @classmethod
    def from_response(
        cls,
        response: requests.Response,
        window: Window,
        max_bytes: int,
        *,
        pure_python: bool = False,
        spool: bool = False,
        on_close: Callable[[], None] | None = None,
    ) -> ExportStream:
        """`spool`: download the whole body to a temporary file before parsing begins, so that
        a window waiting for its turn to write (SQLite) is not waiting for the server too."""
        chunks: Iterator[bytes] = transport_guard(
            response.raw.stream(_CHUNK, decode_content=False), window
        )
        if spool:
            chunks = _spooled(chunks, max_bytes, window)
        reader = DecodedReader(
            chunks,
            response.headers.get("Content-Encoding", ""),
            max_bytes,
            window,
        )

        def close() -> None:
            response.close()
            if on_close is not None:
                on_close()

        return cls(reader, window, on_close=close, pure_python=pure_python)

    @property
    def expected(self) -> int | None:
        count = self.query_info.get("conversations")
        return count if isinstance(count, int) and not isinstance(count, bool) else None

    @property
    def bytes_received(self) -> int:
        return int(getattr(self._reader, "bytes_in", 0))

    def _next(self) -> Element:
        try:
            item = next(self._items)
            if self._guard is not None:
                self._guard.item_done()
            return item
        except ijson.JSONError as exc:
            raise self._parse_error(exc) from None
        except UnicodeDecodeError as exc:
            # yajl passes a surrogate escape on as UTF-8 bytes (ED A0 80 for \ud800), which
            # Python refuses. SurrogateGuard raises first for almost every lone one, but takes
            # an escaped backslash before "ud800" for an escape, and then a lone "\udc00"
            # after it for the second half of a pair: the exact parser reads either as it is.
            bad = exc.object[exc.start : exc.start + 2]
            if len(bad) == 2 and bad[0] == 0xED and 0xA0 <= bad[1] <= 0xBF:
                raise ExactParseNeeded(
                    "the export holds an unpaired surrogate escape, which the fast C parser "
                    "cannot pass on; the window is re-read with the pure-Python parser "
                    "(slower), which keeps it",
                    self.source,
                    retry_after=0.0,
                ) from None
            raise BrokenStreamError(
                f"the export body is not valid JSON (invalid UTF-8: bytes {exc.object[exc.start : exc.end]!r} "
                "in a string); the window is incomplete",
                self.source,
            ) from None
        except LoneSurrogate:
            raise ExactParseNeeded(
                "the export holds an unpaired surrogate escape (such as \\ud800), which the fast "
                "C parser would silently turn into '?'; the window is re-read with the "
                "pure-Python parser (slower), which keeps it",
                self.source,
                retry_after=0.0,
            ) from None

    def _parse_error(self, exc: Exception) -> BrokenStreamError | ExportDataError:
        long_integer = _LONG_INTEGER.match(str(exc))
        if long_integer:
            digits = len(long_integer.group(1).lstrip("-"))
            return ExportDataError(
                f"the export holds an integer of {digits:,} digits; integers of up to "
                f"{MAX_INTEGER_DIGITS:,} digits are kept, longer ones are refused: report this "
                "export to the vendor",
                self.source,
            )
        overflow = _FLOAT_OVERFLOW.search(str(exc))
        if overflow and (overflow.group(1) is None or _overflows(overflow.group(1))):
            number = f" ({overflow.group(1)})" if overflow.group(1) else ""
            return ExportDataError(
                f"the export holds a number beyond the range of a double-precision float"
                f"{number}, which cannot be stored, and the parser cannot read on past it: "
                "report this export to the vendor",
                self.source,
            )
        if "integer overflow" in str(exc):
            # yajl reads integers as 64-bit; Python's parser reads any size, slowly.
            return ExactParseNeeded(
                "the export holds an integer beyond 64 bits, which the fast C parser cannot "
                "read; the window is re-read with the pure-Python parser (slower)",
                self.source,
                retry_after=0.0,
            )
        if "premature EOF" in str(exc) or "Incomplete JSON content" in str(exc):
            return BrokenStreamError(
                f"the export stream ended before its JSON array was closed ({_short(exc)}); "
                "the window is incomplete",
                self.source,
            )
        return BrokenStreamError(
            f"the export body is not valid JSON ({_parse_detail(exc)}); the window is incomplete",
            self.source,
        )

    def _read_query_info(self) -> None:
        try:
            first, _ = self._next()
        except StopIteration:
            raise BrokenStreamError(
                "the export body is not a JSON array beginning with query_info", self.source
            ) from None
        if not isinstance(first, dict) or first.get("type") != "query_info":
            if isinstance(first, dict) and first.get("type") == "error":
                raise BrokenStreamError(
                    f"the API reported an error: {first.get('message', '')}", self.source
                )
            raise ExportDataError("the export's first element is not query_info", self.source)
        self.query_info = first

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """The conversations, parsed."""
        for conversation, _ in self.conversations():
            yield conversation

    def conversations(self) -> Iterator[Element]:
        """The conversations, each with the text orjson parsed it from (None where ijson did:
        orjson would not give it back exactly)."""
        while True:
            try:
                element, text = self._next()
            except StopIteration:
                break
            if not isinstance(element, dict):
                raise ExportDataError(
                    f"element {self.received + 1} of the export is a {type(element).__name__}, not an object",
                    self.source,
                )
            kind = element.get("type")
            if kind == "conversation" or (kind is None and "messages" in element):
                if self.post_query_info is not None:
                    raise ExportDataError("a conversation came after post_query_info", self.source)
                # Its id and shape are checked with the rest of it (normalize.content_digest).
                self.received += 1
                yield element, text
            elif kind == "post_query_info":
                self.post_query_info = element
            elif kind == "error":
                raise BrokenStreamError(
                    f"the API reported an error mid-stream after {self.received} conversations: "
                    f"{element.get('message', '')!s}; the window is incomplete",
                    self.source,
                )
            else:
                self.unknown_elements.append(element)
                log.warning(
                    "%s: an export element of unknown type %r is not loaded; it is kept in "
                    "etl_runs.unknown_elements",
                    self.source,
                    kind,
                )
        self._check_complete()

    def _check_complete(self) -> None:
        if self.post_query_info is None:
            raise BrokenStreamError(
                f"the export stream ended without post_query_info after {self.received} "
                "conversations; the window is incomplete",
                self.source,
            )
        if self.expected is not None and self.received != self.expected:
            raise BrokenStreamError(
                f"query_info announced {self.expected} conversations but the stream carried "
                f"{self.received}; the window is incomplete",
                self.source,
            )
        self.complete = True

    def close(self) -> None:
        if self._on_close is not None:
            self._on_close()

    def __enter__(self) -> ExportStream:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _spooled(chunks: Iterator[bytes], max_bytes: int, window: Window) -> Iterator[bytes]:
    """All of `chunks` read into a temporary file now, then read back from it."""
    spool = tempfile.TemporaryFile()
    size = 0
    try:
        for chunk in chunks:
            size += len(chunk)
            if size > max_bytes:  # compressed, it is no more than decompressed: the same cap
                raise ResponseTooLarge(
                    f"the body passed the cap of {max_bytes:,} bytes (api.max_decompressed_bytes)"
                    " while it was downloaded ahead of loading: use a smaller --window or raise "
                    "the cap",
                    window,
                )
            spool.write(chunk)
    except BaseException:  # a broken download, or one too large: the file goes at once
        spool.close()
        raise
    spool.seek(0)
    return _read_back(spool)


def _read_back(spool: IO[bytes]) -> Iterator[bytes]:
    with spool:
        while chunk := spool.read(_CHUNK):
            yield chunk


def _exact(backend: Any, piece: bytes) -> Any:
    """One element parsed by ijson, which keeps integers beyond 64 bits exact (or refuses them)."""
    return next(backend.items(io.BytesIO(b"[" + piece + b"]"), "item", use_float=True))


def _overflows(number: str) -> bool:
    return math.isinf(float(number))


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


def _parse_detail(exc: BaseException) -> str:
    """yajl's error, without the text it stopped at: that is the export's, maybe what an end
    user wrote, and the message is stored (etl_runs) where `etl forget` does not reach."""
    raw = exc.args[0] if exc.args else ""
    text = raw.decode("utf-8", "backslashreplace") if isinstance(raw, bytes) else str(raw)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    detail = lines[0].rstrip(".")[:200]
    if len(lines) > 1 and any(word in lines[1] for word in ("NaN", "Infinity")):
        detail += " (NaN and Infinity are not JSON numbers)"
    return detail
