"""Cuts an export body into its top-level elements for orjson; anything unusual goes to ijson."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any, Final

import orjson

# Each conversation carries the type "conversation"; its start is found by that literal (a fast
# byte search) and checked by what surrounds it: the end of the previous object and a comma
# before, the next key or the object's end after. Unescaped quotes cannot occur inside a JSON
# string, so a match is structural; one between two nested objects (a conversation inside a
# conversation) gives a piece that does not parse on its own, and ijson takes over from there.
_TYPE_VALUE: Final = b'"conversation"'
_BEFORE: Final = re.compile(rb'\}\s*,\s*(\{)\s*"type"\s*:\s*\Z')
_AFTER: Final = re.compile(rb"\s*(.)", re.DOTALL)  # the next byte that is not whitespace
_LOOK_BACK: Final = 64  # bytes before the literal where the boundary must lie
_OPENING: Final = re.compile(rb"\s*\[\s*(\{)")
_OPENING_BYTES: Final = 256  # read before judging how the body opens
_READ: Final = 64 * 1024
_COMPACT_AT: Final = 1024 * 1024  # bytes already parsed before the buffer is shifted
# A conversation larger than this is left to ijson (with the rest of the body), which builds it
# as it reads: looking further for its end would buffer ever more of the body.
_MAX_PIECE: Final = 8 * 1024 * 1024
# orjson reads integers beyond 64 bits as floats (silently inexact); yajl refuses them. A piece
# with a run of 19 digits may hold one, so it is parsed again the exact (ijson) way. The run is
# found by mapping digits to "0" and most of the rest to " " and searching for nineteen "0"s:
# one pass in C over the piece.
# The same mapping keeps ":" and ".", so that a time with more than six digits after the
# seconds ("HH:MM:SS.fffffff") shows as "00:00:00.0000000": Python keeps microseconds and cuts
# the rest. (A number after a key, `"lat":59.9138688`, has no second colon.)
_SHAPE: Final = bytes(0x30 if 0x30 <= b <= 0x39 else b if b in b":." else 0x20 for b in range(256))
_RUN: Final = b"0" * 19
_FINER_THAN_MICROSECONDS: Final = b"00:00:00.0000000"


def has_digit_run(piece: bytes) -> bool:
    """Whether `piece` holds 19 ASCII digits in a row (an integer that may not fit 64 bits)."""
    return piece.translate(_SHAPE).find(_RUN) >= 0


def finer_than_microseconds(text: bytes) -> int:
    """How many times in `text` have more than six digits after the seconds."""
    return text.translate(_SHAPE).count(_FINER_THAN_MICROSECONDS)


Fallback = Callable[[bytes], Iterator[Any]]
_REFUSED: Final = object()


Element = tuple[Any, bytes | None]  # a parsed element, and its text when orjson parsed it


def split_elements(
    reader: Any, fallback: Fallback, exact: Callable[[bytes], Any]
) -> Iterator[Element]:
    """The elements of the JSON array `reader` holds, as ijson's `items(reader, "item")` gives,
    each with the text orjson parsed it from (None for what ijson parsed): orjson gives the
    same element again from that text, so a process may pass it on as bytes.

    Each conversation between two boundaries is parsed by orjson (several times faster than
    ijson building the same objects). Whatever is not such a piece — the body's last
    conversation and post_query_info, an element orjson refuses (lone surrogate, number out of
    range, invalid UTF-8, deep nesting), a body written another way — goes to
    `fallback(prefix)`, which must parse `prefix` followed by the rest of `reader` as the whole
    body: ijson then yields what is left, or raises what it always raised. `exact(piece)` parses
    one element the ijson way, for pieces whose integers orjson might read inexactly.
    """
    buffer = bytearray()
    eof = False

    def read() -> bool:
        nonlocal eof
        if not eof:
            data = reader.read(_READ)
            eof = not data
            buffer.extend(data)
        return not eof

    while len(buffer) < _OPENING_BYTES and read():
        pass
    opening = _OPENING.match(buffer)
    if opening is None:
        yield from _hand_over(buffer, 0, b"", fallback)
        return
    start = search_from = opening.start(1)
    while True:
        found = buffer.find(_TYPE_VALUE, search_from)
        after = None if found < 0 else _AFTER.match(buffer, found + len(_TYPE_VALUE))
        if after is None:  # no literal yet, or too few bytes after it to judge
            searched = len(buffer) if found < 0 else found
            if len(buffer) - start > _MAX_PIECE or not read():
                yield from _hand_over(buffer, start, b"[", fallback)
                return
            search_from = max(start, searched - len(_TYPE_VALUE))
            continue
        boundary = None
        if after.group(1) in b",}":
            boundary = _BEFORE.search(buffer, max(start, found - _LOOK_BACK), found)
        if boundary is None:
            search_from = found + 1  # "conversation" as a key or another value: no boundary
            continue
        end = boundary.start() + 1
        piece = bytes(buffer[start:end])
        try:
            element = orjson.loads(piece)
        except orjson.JSONDecodeError:
            element = _REFUSED
        if element is _REFUSED:
            yield from _hand_over(buffer, start, b"[", fallback)
            return
        if has_digit_run(piece):
            yield exact(piece), None
        else:
            yield element, piece
        start = search_from = boundary.start(1)
        if start >= _COMPACT_AT:
            del buffer[:start]
            start = search_from = 0


def _hand_over(
    buffer: bytearray, start: int, opening: bytes, fallback: Fallback
) -> Iterator[Element]:
    """The rest of the body to ijson; the buffer is emptied first (not held for the window)."""
    prefix = opening + bytes(buffer[start:])
    buffer.clear()
    return ((element, None) for element in fallback(prefix))
