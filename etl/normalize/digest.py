"""A conversation's identity and content hash, computed before (and without) normalizing it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from hashlib import blake2b
from typing import Any

import orjson

from etl.normalize.errors import NormalizeError, shown
from etl.normalize.fields import INT_MAX, INT_MIN


def _strict_default(value: object) -> Any:
    raise TypeError("not plain JSON")


# The version of the rows a conversation normalizes to, hashed with it: when a release changes
# them (a new column, values kept elsewhere), every stored copy's hash differs from a reload's,
# so a backfill over loaded windows rewrites each conversation once instead of skipping it as
# unchanged. Bump it with any change to what normalize_conversation produces. 2: intent
# inherit_skill and every occurrence value on the referring row (migration 0003).
ROWS_VERSION = 2
_PERSON = f"convo-etl rows {ROWS_VERSION}".encode()


def _hash(data: bytes) -> str:
    return blake2b(data, digest_size=16, person=_PERSON).hexdigest()


# One reusable C-accelerated encoder; the exact form is the documented hash input.
# NaN and infinities are refused (ValueError): JSON has no such number, and ijson's pure-Python
# parser reads a negative number beyond a double's range (-1e400) as -inf.
_encode = json.JSONEncoder(
    ensure_ascii=False,
    separators=(",", ":"),
    check_circular=False,
    allow_nan=False,
    default=_strict_default,
).encode


def _digest(conv: Mapping[str, Any], finite_floats: bool) -> tuple[str, bool, bool]:
    """The content hash, whether the conversation needs the slow cleaning path, and whether
    it is plain JSON that orjson encodes exactly.

    The serialisation is needed for the hash anyway, so it doubles as a cheap detector: a NUL
    shows as the escape "\\u0000", a lone surrogate makes UTF-8 encoding fail, and a value that
    is not plain JSON (Decimal) makes the strict encoder fail.

    orjson (several times faster than the stdlib encoder) serialises what it accepts; it
    refuses lone surrogates, integers beyond 64 bits, Decimal and non-dict mappings (TypeError),
    and writes NaN and ±Infinity as null: when its text holds a null, a round trip must give
    the value back, else the stdlib encoder (which writes NaN/Infinity) takes over. Both write
    the same compact text except some floats' exponent form (1e-06 vs 1e-6), and each text
    determines the value, so the hash stays exact: same export, same hash; any change, another.
    With `finite_floats` (the caller knows no float is NaN or infinite) the round trip is
    skipped: it is the most expensive part, and yajl's parser never produces such a float.
    """
    try:
        data = orjson.dumps(conv)
    except TypeError:  # orjson.JSONEncodeError included
        pass
    else:
        if finite_floats or b"null" not in data or orjson.loads(data) == conv:
            return _hash(data), b"\\u0000" in data, True
    needs_cleaning = False
    try:
        text = _encode(conv)
    except TypeError:
        text = json.dumps(
            conv, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=str
        )
        needs_cleaning = True
    try:
        data = text.encode()
    except UnicodeEncodeError:
        data = text.encode("utf-8", "surrogatepass")
        needs_cleaning = True
    if "\\u0000" in text:
        needs_cleaning = True
    return _hash(data), needs_cleaning, False


def _conversation_id(conv: Any, position: int | None) -> int:
    if not (conv.__class__ is dict or isinstance(conv, Mapping)):
        raise NormalizeError(
            f"expected a conversation object, got {type(conv).__name__}", position=position
        )
    cid = conv.get("id")
    if cid.__class__ is not int:
        raise NormalizeError(
            f"the conversation has no integer id (got {shown(cid)})", position=position, field="id"
        )
    if not INT_MIN <= cid <= INT_MAX:
        raise NormalizeError(
            f"conversation id {shown(cid)} is out of range for bigint (a 64-bit signed integer), "
            "the type of conversations.id",
            position=position,
            field="id",
        )
    return cid


OUT_OF_RANGE = (
    "a number in it is not finite (NaN, or beyond the range of a double-precision float, such "
    "as -1e400), which JSON cannot hold and the warehouse cannot store"
)


# Serialising JSON recurses once per level, so hostile nesting (10,000 levels) would crash the
# run; it is refused as a data error instead. Python's default recursion limit is 1,000.
TOO_DEEP = (
    "a value in it is nested too deeply to be stored (JSON nested deeper than about 900 levels)"
)


@dataclass(slots=True, frozen=True)
class Digest:
    """A conversation's id and content hash, computed before (and without) normalizing it."""

    id: int
    content_hash: str
    needs_cleaning: bool
    plain: bool = False

    def __reduce__(self) -> tuple[type[Digest], tuple[int, str, bool, bool]]:
        # Every conversation's digest crosses the extract worker's pipe. A slots dataclass
        # unpickles through dataclasses' generic __setstate__, which looks its fields up
        # again for each object; calling the class does not.
        return (Digest, (self.id, self.content_hash, self.needs_cleaning, self.plain))

    @property
    def plain_rows(self) -> bool:
        """Whether the rows it normalizes to are plain JSON too (NormalizedConversation.plain):
        cleaning replaces what orjson would refuse with text the stdlib encoder must write."""
        return self.plain and not self.needs_cleaning


def content_digest(
    conv: Mapping[str, Any], *, finite_floats: bool = False, position: int | None = None
) -> Digest:
    """Check the conversation's id and messages list and hash it; raise NormalizeError if not.

    The cheap first half of `normalize_conversation`: a loader that finds the hash already
    stored can skip the rest. `finite_floats` promises that no float in `conv` is NaN or
    infinite (true of everything yajl parsed: it refuses NaN and overflowing numbers); it saves
    a check and must not be passed otherwise, or such a float would be hashed as null.
    `position` (in the stream) names a conversation without a usable id in errors.
    """
    cid = _conversation_id(conv, position)
    messages = conv.get("messages")
    if not isinstance(messages, list):
        problem = (
            "missing" if messages is None else f"must be a list, got {type(messages).__name__}"
        )
        raise NormalizeError(f"messages {problem}", conversation_id=cid, field="messages")
    try:
        content_hash, needs_cleaning, plain = _digest(conv, finite_floats)
    except RecursionError:
        raise NormalizeError(TOO_DEEP, conversation_id=cid) from None
    except ValueError:  # a float that is not finite (the stdlib encoder refuses it)
        raise NormalizeError(OUT_OF_RANGE, conversation_id=cid) from None
    return Digest(cid, content_hash, needs_cleaning, plain)
