"""A window's conversations as COPY data, batch by batch: compact and picklable."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Final, NamedTuple

from etl.load.copyformat import DEFAULT_FORMAT, CopyFormat
from etl.normalize import TABLE_COLUMNS, NormalizedConversation, NormalizeError
from etl.normalize.digest import TOO_DEEP

CHILD_TABLES: Final = ("messages", "content", "buttons", "intent_analysis")
DIMENSION_TABLES: Final = ("intents", "actions")


class EncodedConversation(NamedTuple):
    """One conversation's fact rows as COPY data; `conversation` lacks three loader columns."""

    id: int
    content_hash: str
    # The normalizer's columns and content_hash; the loader appends the rest of LOAD_COLUMNS
    # (text: without the newline; binary: the field count already covers them).
    conversation: bytes
    children: tuple[bytes, ...]  # COPY rows per CHILD_TABLES entry
    child_rows: tuple[int, ...]


class EncodedBatch(NamedTuple):
    """A batch's conversations, and its dimension rows once per id (the latest) for the batch."""

    conversations: list[EncodedConversation]
    dimensions: tuple[bytes, ...]  # COPY rows per DIMENSION_TABLES entry
    dimension_ids: tuple[tuple[int, ...], ...]
    binary: bool  # every part in COPY's binary format (else text)


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


def encode(
    conversation: NormalizedConversation, copy_format: CopyFormat = DEFAULT_FORMAT
) -> EncodedConversation:
    """The conversation's fact rows as COPY data (its dimension rows go to a BatchEncoder)."""
    rows = conversation.rows
    formatters = copy_format.formatters(conversation.plain)
    (line,) = rows["conversations"]
    if copy_format.binary:
        head = formatters["conversations"]([(*line, conversation.content_hash)])
    else:
        text = formatters["conversations"]([line])[:-1]
        head = b"%b\t%b" % (text, conversation.content_hash.encode())
    return EncodedConversation(
        conversation.id,
        conversation.content_hash,
        head,
        tuple(formatters[t](rows[t]) for t in CHILD_TABLES),
        tuple(len(rows[t]) for t in CHILD_TABLES),
    )


class Prepared(NamedTuple):
    """A conversation ready to join a batch: fact rows encoded, dimension rows kept as rows."""

    encoded: EncodedConversation
    dimension_rows: tuple[list[tuple[Any, ...]], ...]  # per DIMENSION_TABLES entry
    plain: bool
    binary: bool  # the COPY format `encoded` is in


def prepare(
    conversation: NormalizedConversation, copy_format: CopyFormat = DEFAULT_FORMAT
) -> Prepared:
    """Encode what can be encoded before the conversation's batch is known (see BatchEncoder).

    Raises NormalizeError for JSON nested too deeply to serialise (the hash, taken at a
    shallower stack, may have passed), so that it is a data error like any other.
    """
    try:
        encoded = encode(conversation, copy_format)
    except RecursionError:
        raise NormalizeError(TOO_DEEP, conversation_id=conversation.id) from None
    return Prepared(
        encoded,
        tuple(conversation.rows[table] for table in DIMENSION_TABLES),
        conversation.plain,
        copy_format.binary,
    )


class BatchEncoder:
    """Encodes a batch conversation by conversation; its dimension rows once per id at the end.

    The same intents and actions recur in most conversations (about 15 rows each, a few
    hundred distinct ids per batch): keeping only the latest row per id for the whole batch
    spares most of their encoding and of the database's staging work, and gives the rows the
    upsert would keep anyway (latest last_seen_at, the later row on a tie).
    """

    def __init__(self, copy_format: CopyFormat = DEFAULT_FORMAT) -> None:
        self.copy_format = copy_format
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
        self.add_prepared(prepare(conversation, self.copy_format))

    def add_prepared(self, prepared: Prepared) -> None:
        """Add a conversation `prepare` encoded in this encoder's format."""
        if prepared.binary != self.copy_format.binary:
            raise ValueError("a conversation prepared in another COPY format than the batch's")
        self._encoded.append(prepared.encoded)
        for collected, rows in zip(self._dimension_rows, prepared.dimension_rows, strict=True):
            collected.extend(rows)
        self._plain = self._plain and prepared.plain

    def finish(self) -> EncodedBatch:
        """The batch so far; the encoder starts empty again."""
        formatters = self.copy_format.formatters(self._plain)
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
            self.copy_format.binary,
        )
        self._reset()
        return batch


def encode_batch(
    conversations: Iterable[NormalizedConversation], copy_format: CopyFormat = DEFAULT_FORMAT
) -> EncodedBatch:
    """A whole batch as COPY data (see BatchEncoder)."""
    encoder = BatchEncoder(copy_format)
    for conversation in conversations:
        encoder.add(conversation)
    return encoder.finish()
