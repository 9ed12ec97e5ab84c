"""The Export API v3 client: one POST per window, parsed while it downloads."""

from __future__ import annotations

import io
import json
import logging
import re
import ssl
import sys
from collections.abc import Iterator, Mapping
from datetime import UTC
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any

import ijson
import requests
import urllib3.exceptions

from etl import __version__
from etl.config import ApiSettings
from etl.extract.auth import StaticToken, TokenProvider, make_token_provider
from etl.extract.decode import DecodedReader
from etl.extract.errors import (
    AuthError,
    BrokenStreamError,
    ExportDataError,
    FatalAPIError,
    NumberOverflowError,
    RequestRejected,
    RetriableAPIError,
)
from etl.extract.split import split_elements
from etl.windows import Window

log = logging.getLogger(__name__)

_CHUNK = 64 * 1024
# What the C parser reads at a time. Small reads keep what it builds per read in the CPU cache
# (64 KiB parse twice as fast as 1 MiB), but yajl re-scans a token that spans reads from its
# start on every read (a 50 MB string took 14 s with 64 KiB reads): reads double while no
# conversation comes out of them (up to _MAX_PARSE_READ), and shrink back after one does.
_PARSE_READ = 64 * 1024
_MAX_PARSE_READ = 8 * 1024 * 1024
# The pure-Python backend has no such cache effect; it reads the old fixed size.
_PARSE_BUFFER = 1024 * 1024
_warned_backend = False


# Python refuses int <-> str conversions beyond 4,300 digits (CVE-2020-10735: they take
# quadratic time). Windows re-read for integers beyond 64 bits may keep integers this long exactly
# (in JSON columns); a longer one is refused as a data error.
MAX_INTEGER_DIGITS = 10_000
_LONG_INTEGER = re.compile(r"Unexpected symbol '(-?[0-9]+)'")


def _ijson_backend(pure_python: bool = False) -> Any:
    global _warned_backend
    if pure_python:
        limit = sys.get_int_max_str_digits()
        if 0 < limit < MAX_INTEGER_DIGITS:
            sys.set_int_max_str_digits(MAX_INTEGER_DIGITS)
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


def request_body(window: Window, filters: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON body: explicit-offset bounds, then the filters passed through unchanged."""
    body: dict[str, Any] = {k: v for k, v in filters.items() if k not in ("from", "to")}
    body["from"] = window.start.astimezone(UTC).isoformat()
    body["to"] = window.end.astimezone(UTC).isoformat()
    return body


def parse_retry_after(value: str | None) -> float | None:
    """`Retry-After` as seconds, from delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    from datetime import datetime

    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


def _server_message(response: requests.Response) -> str:
    try:
        body = json.loads(response.content[:65536] or b"null")
    except ValueError:
        return response.text[:200].strip()
    if isinstance(body, dict):
        return str(body.get("message") or body.get("error") or "")[:500]
    return ""


def validate_response(response: requests.Response, window: Window) -> None:
    """Map an HTTP status to the error that says what to do; return quietly on 200."""
    status = response.status_code
    if status == 200:
        return
    message = _server_message(response)
    detail = f": {message}" if message else ""
    if status in (401, 403):
        raise AuthError(status, message, window)
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        raise RetriableAPIError(
            f"the API is rate limiting (HTTP 429, Retry-After {response.headers.get('Retry-After', 'absent')}){detail}",
            window,
            retry_after=retry_after,
        )
    if status >= 500 or status == 408:
        raise RetriableAPIError(
            f"the API failed with HTTP {status}{detail}",
            window,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )
    if status in (400, 404, 405, 422):
        raise RequestRejected(
            f"the API rejected the request with HTTP {status}{detail}; check api.url and the "
            "request filters in the config",
            window,
        )
    raise FatalAPIError(f"unexpected HTTP {status} from the export endpoint{detail}", window)


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
        on_overflow: Any = None,
        split: bool = True,
    ) -> None:
        # Errors name the window, or the file for saved exports.
        self.window: Window | str | None = window if window is not None else source
        self._reader = reader
        self._on_close = on_close
        self._on_overflow = on_overflow
        backend = _ijson_backend(pure_python)
        # yajl refuses NaN, Infinity and numbers that overflow a double: every float is finite.
        self.finite_floats: bool = backend.backend_name == "yajl2_c"
        self._guard: _SurrogateGuard | None = None
        if pure_python:
            self._items = backend.items(reader, "item", use_float=True, buf_size=_PARSE_BUFFER)
        elif not split:  # ijson for everything (what split_elements falls back to)
            self._items = self._fallback(backend, b"")
        else:
            self._items = split_elements(
                reader, lambda prefix: self._fallback(backend, prefix), lambda p: _exact(backend, p)
            )
        self.query_info: dict[str, Any] = {}
        self.post_query_info: dict[str, Any] | None = None
        self.received = 0
        self.complete = False
        self._read_query_info()

    def _fallback(self, backend: Any, prefix: bytes) -> Iterator[Any]:
        """ijson over `prefix` and the rest of the body (see split_elements)."""
        self._guard = _SurrogateGuard(_Prefixed(prefix, self._reader))
        items: Iterator[Any] = backend.items(
            self._guard, "item", use_float=True, buf_size=_PARSE_READ
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
        on_overflow: Any = None,
    ) -> ExportStream:
        chunks = response.raw.stream(_CHUNK, decode_content=False)
        reader = DecodedReader(
            _guard(chunks, window), response.headers.get("Content-Encoding", ""), max_bytes, window
        )
        return cls(
            reader,
            window,
            on_close=response.close,
            pure_python=pure_python,
            on_overflow=on_overflow,
        )

    @property
    def expected(self) -> int | None:
        count = self.query_info.get("conversations")
        return count if isinstance(count, int) and not isinstance(count, bool) else None

    @property
    def bytes_received(self) -> int:
        return int(getattr(self._reader, "bytes_in", 0))

    def _next(self) -> Any:
        try:
            item = next(self._items)
            if self._guard is not None:
                self._guard.item_done()
            return item
        except ijson.JSONError as exc:
            raise self._parse_error(exc) from None
        except UnicodeDecodeError as exc:
            # yajl passes a surrogate encoded as UTF-8 bytes (ED A0 80), Python refuses it.
            raise BrokenStreamError(
                f"the export body is not valid JSON (invalid UTF-8: bytes {exc.object[exc.start : exc.end]!r} "
                "in a string); the window is incomplete",
                self.window,
            ) from None
        except _LoneSurrogate:
            if self._on_overflow is not None:
                self._on_overflow()
            raise NumberOverflowError(
                "the export holds an unpaired surrogate escape (such as \\ud800), which the fast "
                "C parser would silently turn into '?'; the window is re-read with the "
                "pure-Python parser (slower), which keeps it",
                self.window,
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
                self.window,
            )
        if "integer overflow" in str(exc):
            # yajl reads integers as 64-bit; Python's parser reads any size, slowly.
            if self._on_overflow is not None:
                self._on_overflow()
            return NumberOverflowError(
                "the export holds an integer beyond 64 bits, which the fast C parser cannot "
                "read; the window is re-read with the pure-Python parser (slower)",
                self.window,
                retry_after=0.0,
            )
        if "premature EOF" in str(exc) or "Incomplete JSON content" in str(exc):
            return BrokenStreamError(
                f"the export stream ended before its JSON array was closed ({_short(exc)}); "
                "the window is incomplete",
                self.window,
            )
        return BrokenStreamError(
            f"the export body is not valid JSON ({_parse_detail(exc)}); the window is incomplete",
            self.window,
        )

    def _read_query_info(self) -> None:
        try:
            first = self._next()
        except StopIteration:
            raise BrokenStreamError(
                "the export body is not a JSON array beginning with query_info", self.window
            ) from None
        if not isinstance(first, dict) or first.get("type") != "query_info":
            if isinstance(first, dict) and first.get("type") == "error":
                raise BrokenStreamError(
                    f"the API reported an error: {first.get('message', '')}", self.window
                )
            raise ExportDataError("the export's first element is not query_info", self.window)
        self.query_info = first

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while True:
            try:
                element = self._next()
            except StopIteration:
                break
            if not isinstance(element, dict):
                raise ExportDataError(
                    f"element {self.received + 1} of the export is a {type(element).__name__}, not an object",
                    self.window,
                )
            kind = element.get("type")
            if kind == "conversation" or (kind is None and "messages" in element):
                if self.post_query_info is not None:
                    raise ExportDataError("a conversation came after post_query_info", self.window)
                if not isinstance(element.get("id"), int) or isinstance(element.get("id"), bool):
                    raise ExportDataError(
                        f"conversation #{self.received + 1} in the stream has no integer id "
                        f"(got {element.get('id')!r}); report this export to the vendor",
                        self.window,
                    )
                self.received += 1
                yield element
            elif kind == "post_query_info":
                self.post_query_info = element
            elif kind == "error":
                raise BrokenStreamError(
                    f"the API reported an error mid-stream after {self.received} conversations: "
                    f"{element.get('message', '')!s}; the window is incomplete",
                    self.window,
                )
            else:
                log.warning(
                    "window %s: skipping an export element of unknown type %r", self.window, kind
                )
        self._check_complete()

    def _check_complete(self) -> None:
        if self.post_query_info is None:
            raise BrokenStreamError(
                f"the export stream ended without post_query_info after {self.received} "
                "conversations; the window is incomplete",
                self.window,
            )
        if self.expected is not None and self.received != self.expected:
            raise BrokenStreamError(
                f"query_info announced {self.expected} conversations but the stream carried "
                f"{self.received}; the window is incomplete",
                self.window,
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


def _exact(backend: Any, piece: bytes) -> Any:
    """One element parsed by ijson, which keeps integers beyond 64 bits exact (or refuses them)."""
    return next(backend.items(io.BytesIO(b"[" + piece + b"]"), "item", use_float=True))


class _Prefixed:
    """A reader that gives `prefix` first, then what `reader` gives."""

    def __init__(self, prefix: bytes, reader: Any) -> None:
        self._prefix = prefix
        self._reader = reader

    def read(self, size: int = -1) -> bytes:
        if self._prefix and size != 0:
            data, self._prefix = self._prefix, b""
            return data
        rest: bytes = self._reader.read(size)
        return rest


class _LoneSurrogate(Exception):
    """Internal: the body holds a surrogate escape that is not half of a pair."""


# yajl turns "\ud800" into "?", "\ud800\ud800" into U+10000 and fails on a lone "\udc00";
# Python's parser keeps them, and the normalizer stores them losslessly (docs/schema.md). An
# escaped backslash before "u" can match too: that only costs a re-read, never data.
_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_HIGH = re.compile(rb"\\u[dD][89abAB][0-9a-fA-F]{2}")
_LOW = re.compile(rb"\\u[dD][c-fC-F][0-9a-fA-F]{2}")
_HOLD = 11  # an escape pair is 12 bytes: hold back what may be the start of one


class _SurrogateGuard:
    """Passes reads through to the C parser, raising _LoneSurrogate before it can see one.

    When a backslash is among the last 11 bytes of a read, they are held back until the next, so
    that every escape is judged with the 6 bytes after it in view (and the 6 before it, kept from
    earlier reads). Reads without a surrogate escape pass through uncopied.
    """

    def __init__(self, reader: Any) -> None:
        self._reader = reader
        self._held = b""
        self._seen = b""  # the last 6 bytes given to the parser
        self._read_size = _PARSE_READ

    def item_done(self) -> None:
        """The parser gave out an item: back to small reads (see _PARSE_READ)."""
        self._read_size = _PARSE_READ

    def read(self, size: int = -1) -> bytes:
        if size == 0:  # ijson's probe for bytes or str
            data: bytes = self._reader.read(0)
            return data
        # The parser takes reads of any length; ours grow until an item comes out.
        size = self._read_size
        self._read_size = min(size * 2, _MAX_PARSE_READ)
        while True:
            data = self._reader.read(size)
            buffer = self._held + data if self._held else data
            cut = len(buffer)
            if data and b"\\" in buffer[-_HOLD:]:  # an escape may start in the last bytes
                cut = max(len(buffer) - _HOLD, 0)
            if cut or not data:
                break
            self._held = buffer  # too little to judge yet: read on (b"" would mean the end)
        if b"\\u" in buffer:
            context = self._seen + buffer
            for match in _SURROGATE.finditer(context, len(self._seen)):
                at = match.start()
                if at >= len(self._seen) + cut:
                    break  # judged on the next read, with the bytes after it in view
                paired = (
                    _LOW.match(context, at + 6) is not None
                    if context[at + 3] in b"89abAB"
                    else at >= 6 and _HIGH.match(context, at - 6) is not None
                )
                if not paired:
                    raise _LoneSurrogate()
        if cut == len(buffer):
            out, self._held = buffer, b""
        else:
            out, self._held = buffer[:cut], buffer[cut:]
        self._seen = (self._seen + out[-6:])[-6:]
        return out


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


def _parse_detail(exc: BaseException) -> str:
    """yajl's error and the text it stopped at: "lexical error: …, at '{"a": NaN}'"."""
    raw = exc.args[0] if exc.args else ""
    text = raw.decode("utf-8", "backslashreplace") if isinstance(raw, bytes) else str(raw)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    detail = lines[0].rstrip(".")[:200]
    if len(lines) > 1 and "(right here)" not in lines[1]:
        detail += f", at {lines[1][:80]!r}"
        if any(word in lines[1] for word in ("NaN", "Infinity")):
            detail += " (NaN and Infinity are not JSON numbers)"
    return detail


def _guard(chunks: Iterator[bytes], window: Window) -> Iterator[bytes]:
    """Turn transport failures in the middle of the body into BrokenStreamError."""
    try:
        yield from chunks
    except (urllib3.exceptions.ReadTimeoutError, requests.exceptions.ReadTimeout):
        raise BrokenStreamError(
            "the API stopped sending data (read timeout, api.read_timeout) mid-stream; "
            "the window is incomplete",
            window,
        ) from None
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise BrokenStreamError(
            f"the connection broke mid-stream ({type(exc).__name__}); the window is incomplete",
            window,
        ) from None


class ExportClient:
    """Opens export streams for windows, with auth, timeouts and TLS verification."""

    def __init__(self, api: ApiSettings, session: requests.Session | None = None) -> None:
        self._api = api
        self._session = session or requests.Session()
        self._session.headers["User-Agent"] = f"convo-etl/{__version__}"
        # Never honour an environment setting that would switch verification off.
        self._session.trust_env = False
        self._verify: bool | str = str(api.ca_bundle) if api.ca_bundle else True
        self._session.verify = self._verify
        self.tokens: TokenProvider = make_token_provider(api, self._session)
        self._pure_python_windows: set[Window] = set()

    def __repr__(self) -> str:
        return f"ExportClient(url={self._api.url!r})"

    def close(self) -> None:
        self._session.close()

    def open(self, window: Window, filters: Mapping[str, Any] | None = None) -> ExportStream:
        """POST the window's query and return the stream positioned after query_info."""
        body = request_body(window, self._api.filters if filters is None else filters)
        response = self._post(window, body)
        pure_python = window in self._pure_python_windows
        if response.status_code == 401 and not isinstance(self.tokens, StaticToken):
            # An OAuth token can be revoked or expire early: renew it once and try again.
            # (A static token cannot get better by asking again: the 401 is final.)
            response.close()
            self.tokens.invalidate()
            response = self._post(window, body)
        try:
            validate_response(response, window)
            return ExportStream.from_response(
                response,
                window,
                self._api.max_decompressed_bytes,
                pure_python=pure_python,
                on_overflow=lambda: self._pure_python_windows.add(window),
            )
        except BaseException:
            response.close()
            raise

    def _post(self, window: Window, body: dict[str, Any]) -> requests.Response:
        headers = {
            "Authorization": f"Bearer {self.tokens.bearer()}",
            "Accept-Encoding": "gzip, deflate",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        try:
            return self._session.post(
                self._api.export_url,
                data=json.dumps(body),
                headers=headers,
                stream=True,
                timeout=(self._api.connect_timeout, self._api.read_timeout),
                verify=self._verify,
            )
        except requests.exceptions.SSLError as exc:
            cause = (
                "certificate verification failed" if _is_cert_error(exc) else "TLS handshake failed"
            )
            raise FatalAPIError(
                f"{cause} for {self._api.url}; certificates are always verified: if the site uses "
                "a private CA, set api.ca_bundle to its PEM file",
                window,
            ) from None
        except requests.exceptions.ConnectTimeout:
            raise RetriableAPIError(
                f"connecting to {self._api.url} timed out (api.connect_timeout={self._api.connect_timeout}s)",
                window,
            ) from None
        except requests.exceptions.ReadTimeout:
            raise RetriableAPIError(
                f"{self._api.url} accepted the request but sent no response within "
                f"api.read_timeout={self._api.read_timeout}s",
                window,
            ) from None
        except requests.exceptions.ConnectionError as exc:
            raise RetriableAPIError(
                f"could not connect to {self._api.url} ({_short_conn(exc)})", window
            ) from None
        except requests.RequestException as exc:
            raise RetriableAPIError(
                f"request to {self._api.url} failed ({type(exc).__name__})", window
            ) from None


def _is_cert_error(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = (
            seen.__cause__
            or seen.__context__
            or (seen.args[0] if seen.args and isinstance(seen.args[0], BaseException) else None)
        )
    return "CERTIFICATE_VERIFY_FAILED" in str(exc)


def _short_conn(exc: BaseException) -> str:
    text = str(exc)
    for marker in (
        "Connection refused",
        "Name or service not known",
        "Connection reset",
        "timed out",
    ):
        if marker in text:
            return marker
    return type(exc).__name__
