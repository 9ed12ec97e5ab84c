"""The readers an export body goes through before the parser: transport and surrogate guards."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import requests
import urllib3.exceptions

from etl.extract.errors import BrokenStreamError
from etl.windows import Window

# What the C parser reads at a time. Small reads keep what it builds per read in the CPU cache,
# but yajl re-scans a token that spans reads from its start on every read, so one huge string
# costs the square of its size in small reads: reads double while no conversation comes out of
# them (up to MAX_PARSE_READ), and shrink back after one does.
PARSE_READ = 64 * 1024
MAX_PARSE_READ = 8 * 1024 * 1024


def transport_guard(chunks: Iterator[bytes], window: Window) -> Iterator[bytes]:
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


class Prefixed:
    """A reader that gives `prefix` first, then what `reader` gives.

    The prefix goes out in reads of the size asked for, like the rest: handed over whole (up
    to 8 MiB from split_elements), ijson would build every element in it at once.
    """

    def __init__(self, prefix: bytes, reader: Any) -> None:
        self._prefix = memoryview(prefix)
        self._reader = reader

    def read(self, size: int = -1) -> bytes:
        if self._prefix and size != 0:
            cut = len(self._prefix) if size < 0 else size
            data = bytes(self._prefix[:cut])
            self._prefix = self._prefix[cut:]
            return data
        rest: bytes = self._reader.read(size)
        return rest


class LoneSurrogate(Exception):
    """Internal: the body holds a surrogate escape that is not half of a pair."""


# yajl turns "\ud800" into "?", "\ud800\ud800" into U+10000 and fails on a lone "\udc00";
# Python's parser keeps them, and the normalizer stores them losslessly (docs/schema.md). An
# escaped backslash before "u" can match too: that only costs a re-read, never data.
_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_HIGH = re.compile(rb"\\u[dD][89abAB][0-9a-fA-F]{2}")
_LOW = re.compile(rb"\\u[dD][c-fC-F][0-9a-fA-F]{2}")
_HOLD = 11  # an escape pair is 12 bytes: hold back what may be the start of one


class SurrogateGuard:
    """Passes reads through to the C parser, raising LoneSurrogate before it can see one.

    When a backslash is among the last 11 bytes of a read, they are held back until the next, so
    that every escape is judged with the 6 bytes after it in view (and the 6 before it, kept from
    earlier reads). Reads without a surrogate escape pass through uncopied.
    """

    def __init__(self, reader: Any) -> None:
        self._reader = reader
        self._held = b""
        self._seen = b""  # the last 6 bytes given to the parser
        self._read_size = PARSE_READ

    def item_done(self) -> None:
        """The parser gave out an item: back to small reads (see PARSE_READ)."""
        self._read_size = PARSE_READ

    def read(self, size: int = -1) -> bytes:
        if size == 0:  # ijson's probe for bytes or str
            data: bytes = self._reader.read(0)
            return data
        # The parser takes reads of any length; ours grow until an item comes out.
        size = self._read_size
        self._read_size = min(size * 2, MAX_PARSE_READ)
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
                    raise LoneSurrogate()
        if cut == len(buffer):
            out, self._held = buffer, b""
        else:
            out, self._held = buffer[:cut], buffer[cut:]
        self._seen = (self._seen + out[-6:])[-6:]
        return out
