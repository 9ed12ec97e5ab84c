"""PostgreSQL COPY text for normalized conversations: one compact, picklable record each."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, Final, NamedTuple

import orjson
from sqlalchemy import JSON, BigInteger, Boolean, Integer, Text

from etl.compiled import accelerator
from etl.load.schema import UTCDateTime, build_metadata
from etl.normalize import TABLE_COLUMNS, NormalizedConversation, NormalizeError
from etl.normalize.digest import TOO_DEEP

CHILD_TABLES: Final = ("messages", "content", "buttons", "intent_analysis")
DIMENSION_TABLES: Final = ("intents", "actions")

# The same JSON text the SQLAlchemy path binds (compact, non-ASCII kept, NaN refused); one
# reusable encoder, because json.dumps builds a new one per call.
_encode_json = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), allow_nan=False, check_circular=False
).encode
_ESCAPES: Final = {ord("\\"): "\\\\", ord("\t"): "\\t", ord("\n"): "\\n", ord("\r"): "\\r"}


def escape(text: str) -> str:
    """A value as COPY text: backslash, tab, newline and CR escaped (NUL never reaches here)."""
    return text.translate(_ESCAPES)


def _text(v: str) -> str:
    # Four substring scans are cheaper than a regex call or translate() on the common clean value.
    return escape(v) if ("\\" in v or "\t" in v or "\n" in v or "\r" in v) else v


def _json(value: Any) -> str:
    return _text(_encode_json(value))


_orjson_dumps = orjson.dumps


def _json_plain(value: Any) -> str:
    # For conversations the normalizer found plain (no NaN, no integer beyond 64 bits, no lone
    # surrogate, no Decimal): orjson writes the same JSON value several times faster.
    return _text(_orjson_dumps(value).decode())


class EncodedConversation(NamedTuple):
    """One conversation's fact rows as COPY lines; `conversation` lacks the loader's columns."""

    id: int
    content_hash: str
    conversation: bytes  # the normalizer's columns and content_hash, tab-separated, no newline
    children: tuple[bytes, ...]  # COPY lines per CHILD_TABLES entry
    child_rows: tuple[int, ...]


class EncodedBatch(NamedTuple):
    """A batch's conversations, and its dimension rows once per id (the latest) for the batch."""

    conversations: list[EncodedConversation]
    dimensions: tuple[bytes, ...]  # COPY lines per DIMENSION_TABLES entry
    dimension_ids: tuple[tuple[int, ...], ...]


_METADATA: Final = build_metadata(None)  # built once: each build costs ~3 ms at import


def _kinds(table: str) -> list[str]:
    columns = _METADATA.tables[table].c
    kinds = []
    for name in TABLE_COLUMNS[table]:
        column = columns[name]
        type_ = column.type
        if isinstance(type_, JSON):
            kind = "json"
        elif isinstance(type_, UTCDateTime):
            kind = "time"
        elif isinstance(type_, Boolean):
            kind = "bool"
        elif isinstance(type_, BigInteger | Integer):
            kind = "int"
        elif isinstance(type_, Text):
            kind = "text"
        else:  # pragma: no cover - a new column type needs a formatter here
            raise TypeError(f"no COPY formatter for {table}.{name} ({type_!r})")
        kinds.append(kind if column.nullable else kind + "!")
    return kinds


# The normalizer guarantees each column's Python type (a misfit goes to `extra`), so one
# expression per column, without type dispatch, formats a value; a wrong type fails loudly.
_EXPRESSIONS: Final = {
    "text": "_text({v})",
    "int": "str({v})",
    "bool": "('t' if {v} else 'f')",
    # orjson writes a datetime as isoformat() does (same text, checked on 200k random aware
    # datetimes, microsecond 0 and non-UTC offsets included), about twice as fast.
    "time": "_dumps({v})[1:-1].decode()",
    "json": "_json({v})",
}


def _row_formatter(table: str, json_encoder: Any = _json) -> Any:
    """Compile `rows -> COPY text` for one table (generated so each row is one tuple unpack)."""
    names = [f"v{i}" for i in range(len(TABLE_COLUMNS[table]))]
    parts = []
    for name, kind in zip(names, _kinds(table), strict=True):
        expression = _EXPRESSIONS[kind.rstrip("!")].format(v=name)
        parts.append(
            expression if kind.endswith("!") else f"'\\\\N' if {name} is None else {expression}"
        )
    source = (
        "def format_rows(rows):\n"
        f"    return ''.join(['\\t'.join(({', '.join(parts)},)) + '\\n'\n"
        f"                    for {', '.join(names)} in rows])\n"
    )
    namespace: dict[str, Any] = {"_text": _text, "_json": json_encoder, "_dumps": _orjson_dumps}
    # The source is built above from fixed column kinds only, never from data.
    exec(source, namespace)
    return namespace["format_rows"]


Formatter = Callable[[list[tuple[Any, ...]]], bytes]

_KIND_CODES: Final = {"text": 0, "int": 1, "bool": 2, "time": 3, "json": 4}


def python_formatters(plain: bool) -> dict[str, Formatter]:
    """Per table, `rows -> COPY bytes` in Python: the reference for the compiled ones.

    `plain` conversations' JSON goes through orjson, the rest through the stdlib encoder.
    """

    def formatter(table: str) -> Formatter:
        format_text = _row_formatter(table, _json_plain if plain else _json)
        return lambda rows: format_text(rows).encode()

    return {table: formatter(table) for table in TABLE_COLUMNS}


def compiled_formatters(plain: bool) -> dict[str, Formatter] | None:
    """The same formatters compiled (etl/load/_ccopy.c), or None when it is not built."""
    _ccopy = accelerator("etl.load._ccopy")
    if _ccopy is None:
        return None
    dumps = _orjson_dumps if plain else _encode_json
    format_compiled = _ccopy.format_rows

    def formatter(table: str) -> Formatter:
        kinds = tuple(
            _KIND_CODES[kind.rstrip("!")] | (_ccopy.NOT_NULL if kind.endswith("!") else 0)
            for kind in _kinds(table)
        )
        return lambda rows: format_compiled(rows, kinds, dumps)

    return {table: formatter(table) for table in TABLE_COLUMNS}


# The compiled formatters write the same bytes (tests compare both) about 4x faster.
_STDLIB_FORMATTERS: Final = compiled_formatters(False) or python_formatters(False)
_PLAIN_FORMATTERS: Final = compiled_formatters(True) or python_formatters(True)
_SEEN_AT: Final = {table: TABLE_COLUMNS[table].index("last_seen_at") for table in DIMENSION_TABLES}


def _later_or_equal(a: datetime | None, b: datetime | None) -> bool:
    if a is None:
        return b is None
    return b is None or a >= b


def latest_per_id(rows: list[tuple[Any, ...]], seen_at: int) -> list[tuple[Any, ...]]:
    """Dimension rows, one per id: the latest `last_seen_at` wins, the later row on a tie."""
    if len(rows) < 2:
        return rows
    latest: dict[Any, tuple[Any, ...]] = {}
    for row in rows:
        current = latest.get(row[0])
        if current is None or _later_or_equal(row[seen_at], current[seen_at]):
            latest[row[0]] = row
    return list(latest.values())


def encode(conversation: NormalizedConversation) -> EncodedConversation:
    """The conversation's fact rows as COPY text (its dimension rows go to a BatchEncoder)."""
    rows = conversation.rows
    formatters = _PLAIN_FORMATTERS if conversation.plain else _STDLIB_FORMATTERS
    (line,) = rows["conversations"]
    head = formatters["conversations"]([line])[:-1]
    return EncodedConversation(
        conversation.id,
        conversation.content_hash,
        b"%b\t%b" % (head, conversation.content_hash.encode()),
        tuple(formatters[t](rows[t]) for t in CHILD_TABLES),
        tuple(len(rows[t]) for t in CHILD_TABLES),
    )


class Prepared(NamedTuple):
    """A conversation ready to join a batch: fact rows encoded, dimension rows kept as rows."""

    encoded: EncodedConversation
    dimension_rows: tuple[list[tuple[Any, ...]], ...]  # per DIMENSION_TABLES entry
    plain: bool


def prepare(conversation: NormalizedConversation) -> Prepared:
    """Encode what can be encoded before the conversation's batch is known (see BatchEncoder).

    Raises NormalizeError for JSON nested too deeply to serialise (the hash, taken at a
    shallower stack, may have passed), so that it is a data error like any other.
    """
    try:
        encoded = encode(conversation)
    except RecursionError:
        raise NormalizeError(TOO_DEEP, conversation_id=conversation.id) from None
    return Prepared(
        encoded,
        tuple(conversation.rows[table] for table in DIMENSION_TABLES),
        conversation.plain,
    )


class BatchEncoder:
    """Encodes a batch conversation by conversation; its dimension rows once per id at the end.

    The same intents and actions recur in most conversations (about 15 rows each, a few
    hundred distinct ids per batch): keeping only the latest row per id for the whole batch
    spares most of their encoding and of the database's staging work, and gives the rows the
    upsert would keep anyway (latest last_seen_at, the later row on a tie).
    """

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._encoded: list[EncodedConversation] = []
        self._dimension_rows: tuple[list[tuple[Any, ...]], ...] = tuple(
            [] for _ in DIMENSION_TABLES
        )
        self._plain = True

    def __len__(self) -> int:
        return len(self._encoded)

    def add(self, conversation: NormalizedConversation) -> None:
        self.add_prepared(prepare(conversation))

    def add_prepared(self, prepared: Prepared) -> None:
        self._encoded.append(prepared.encoded)
        for collected, rows in zip(self._dimension_rows, prepared.dimension_rows, strict=True):
            collected.extend(rows)
        self._plain = self._plain and prepared.plain

    def finish(self) -> EncodedBatch:
        """The batch so far; the encoder starts empty again."""
        formatters = _PLAIN_FORMATTERS if self._plain else _STDLIB_FORMATTERS
        latest = [
            latest_per_id(rows, _SEEN_AT[table])
            for rows, table in zip(self._dimension_rows, DIMENSION_TABLES, strict=True)
        ]
        batch = EncodedBatch(
            self._encoded,
            tuple(
                formatters[table](rows)
                for rows, table in zip(latest, DIMENSION_TABLES, strict=True)
            ),
            tuple(tuple(row[0] for row in rows) for rows in latest),
        )
        self._reset()
        return batch


def encode_batch(conversations: Iterable[NormalizedConversation]) -> EncodedBatch:
    """A whole batch as COPY text (see BatchEncoder)."""
    encoder = BatchEncoder()
    for conversation in conversations:
        encoder.add(conversation)
    return encoder.finish()
