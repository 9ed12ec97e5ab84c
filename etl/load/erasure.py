"""Erasure and retention in the warehouse: which conversations, how many rows, and the deletes.

`etl forget` erases conversations for good: their rows, their copies in the quarantine, and a
tombstone (the id and when, nothing else) that every later load reads (WindowLoader.changed),
so that no backfill, load-file or reprocess-rejects brings them back; the references and
identifiers it was asked for are kept out the same way (etl.load.erased). `etl prune` removes the
conversations past the retention period, and their quarantined copies, without tombstones: a
backfill over such old dates loads them again, and the next prune removes them again.
Dimension rows (intents, actions) stay: they describe the bot, not a person.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import ColumnElement, Connection, MetaData, func, or_, select

from etl.load.engine import dialect_insert
from etl.load.erased import spellings
from etl.load.loader import WindowLoader, chunks
from etl.load.schema import table_of
from etl.normalize import CHILD_TABLES

# The tables a conversation's rows are in, counted for the run log and --dry-run.
CONVERSATION_TABLES: Final = ("conversations", *CHILD_TABLES)


@dataclass
class Request:
    """What an erasure request names: conversation ids (stored or not: a tombstone also keeps
    one not loaded yet out), and quarantined copies, by etl_rejects row (a copy whose id could
    not be read has no conversation id, but may hold the person's data all the same)."""

    conversations: list[int] = field(default_factory=list)
    rejects: list[int] = field(default_factory=list)


def matching(
    conn: Connection,
    metadata: MetaData,
    *,
    ids: Collection[int] = (),
    references: Collection[str] = (),
    identifiers: Collection[str] = (),
) -> Request:
    """The conversations and quarantined copies a request names: `ids`, and those stored or
    quarantined with one of the `references` or authentication `identifiers`."""
    found = set(ids)
    conversations = table_of(metadata, "conversations")
    for column, values in (
        (conversations.c.reference, list(references)),
        (conversations.c.authentication_identifier, list(identifiers)),
    ):
        for chunk in chunks(values):
            query = select(conversations.c.id).where(column.in_(chunk))
            found.update(conn.execute(query).scalars())
    quarantined: set[int] = set()
    if references or identifiers:
        for row_id, conversation_id in _quarantined(
            conn, metadata, set(references), set(identifiers)
        ):
            quarantined.add(row_id)
            if conversation_id is not None:
                found.add(conversation_id)
    quarantined.update(_rejects_of(conn, metadata, sorted(found)))
    return Request(sorted(found), sorted(quarantined))


def _quarantined(
    conn: Connection, metadata: MetaData, references: set[str], identifiers: set[str]
) -> list[tuple[int, int | None]]:
    """(row id, conversation id) of the quarantined copies with one of the references or
    identifiers. The quarantine keeps the text as sent, so each body is read: it is small,
    and an erasure is rare. A body that is not JSON, or whose values are not strings, is
    compared as far as it can be, never trusted to be well formed."""
    rejects = table_of(metadata, "etl_rejects")
    found = []
    for row_id, conversation_id, body in conn.execute(
        select(rejects.c.id, rejects.c.conversation_id, rejects.c.body)
    ):
        try:
            conversation: Any = json.loads(body)
        except (ValueError, RecursionError):
            continue
        if not isinstance(conversation, dict):
            continue
        if _names(conversation.get("reference"), references) or _names(
            conversation.get("authentication_identifier"), identifiers
        ):
            found.append((row_id, conversation_id))
    return found


def _names(value: Any, asked: set[str]) -> bool:
    """Whether a quarantined copy's value is one asked for (erased.spellings)."""
    return any(text in asked for text in spellings(value))


def count_rows(
    conn: Connection, metadata: MetaData, ids: Sequence[int], rejects: Sequence[int] = ()
) -> dict[str, int]:
    """Rows per table that belong to the conversations `ids`, and the quarantined copies
    `rejects` (etl_rejects row ids)."""
    counts = dict.fromkeys(CONVERSATION_TABLES, 0)
    for name in counts:
        table = table_of(metadata, name)
        column = table.c.id if name == "conversations" else table.c.conversation_id
        for chunk in chunks(ids):
            query = select(func.count()).select_from(table).where(column.in_(chunk))
            counts[name] += conn.execute(query).scalar_one()
    counts["etl_rejects"] = len(rejects)
    return counts


def forget(
    conn: Connection, metadata: MetaData, loader: WindowLoader, request: Request, *, run_id: str
) -> dict[str, int]:
    """Erase what `request` names in the caller's transaction: tombstones first, then the
    conversations' rows (locked as a window locks them, see WindowLoader.erase), then the
    quarantined copies. The rows deleted per table."""
    ids = request.conversations
    counts = count_rows(conn, metadata, ids, request.rejects)
    tombstones = table_of(metadata, "etl_tombstones")
    now = datetime.now(UTC)
    for chunk in chunks(ids):
        conn.execute(
            dialect_insert(conn, tombstones)
            .values([{"conversation_id": i, "forgotten_at": now, "run_id": run_id} for i in chunk])
            .on_conflict_do_nothing(index_elements=[tombstones.c.conversation_id])
        )
    loader.erase(list(ids))
    # A window loading one of them may have quarantined a copy, and committed it while erase
    # waited for that window's locks: the quarantined copies are read again now.
    late = sorted(set(_rejects_of(conn, metadata, ids)) - set(request.rejects))
    delete_rejects(conn, metadata, [*request.rejects, *late])
    counts["etl_rejects"] += len(late)
    return counts


def _rejects_of(conn: Connection, metadata: MetaData, ids: Sequence[int]) -> list[int]:
    """The quarantined copies (etl_rejects row ids) of the conversations `ids`."""
    rejects = table_of(metadata, "etl_rejects")
    found: list[int] = []
    for chunk in chunks(ids):
        query = select(rejects.c.id).where(rejects.c.conversation_id.in_(chunk))
        found.extend(conn.execute(query).scalars())
    return found


def delete_rejects(conn: Connection, metadata: MetaData, rows: Sequence[int]) -> None:
    """Delete quarantined copies by etl_rejects row id."""
    rejects = table_of(metadata, "etl_rejects")
    for chunk in chunks(rows):
        conn.execute(rejects.delete().where(rejects.c.id.in_(chunk)))


def expired_rejects(conn: Connection, metadata: MetaData, cutoff: datetime) -> list[int]:
    """The quarantined copies (etl_rejects row ids) of conversations whose last message (or,
    without a readable one, whose first rejection) is before `cutoff`: the quarantine holds
    whole transcripts, and retention covers them too."""
    rejects = table_of(metadata, "etl_rejects")
    found = []
    for row_id, body, rejected_at in conn.execute(
        select(rejects.c.id, rejects.c.body, rejects.c.rejected_at)
    ):
        if (_last_message(body) or rejected_at) < cutoff:
            found.append(row_id)
    return found


def _last_message(body: str) -> datetime | None:
    try:
        conversation: Any = json.loads(body)
        times = conversation["time"]
        value = times.get("last_message_created") or times.get("created")
        moment = datetime.fromisoformat(value)
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    return moment if moment.tzinfo is not None else None


def expired(conn: Connection, metadata: MetaData, cutoff: datetime, *, limit: int) -> list[int]:
    """Up to `limit` conversations whose last message (or, without one, whose start) is
    before `cutoff`, in id order."""
    conversations = table_of(metadata, "conversations")
    query = (
        select(conversations.c.id)
        .where(is_expired(metadata, cutoff))
        .order_by(conversations.c.id)
        .limit(limit)
    )
    return list(conn.execute(query).scalars())


def is_expired(metadata: MetaData, cutoff: datetime) -> ColumnElement[bool]:
    """Its last message before `cutoff`: by the conversation's last_message_at, or, when the
    export gave none, by its messages' own times, or its start, or when it was loaded."""
    conversations, messages = table_of(metadata, "conversations"), table_of(metadata, "messages")
    last, created = conversations.c.last_message_at, conversations.c.created_at
    latest_message = (
        select(func.max(messages.c.time))
        .where(messages.c.conversation_id == conversations.c.id)
        .scalar_subquery()
    )
    return or_(
        last < cutoff,
        # Only conversations without last_message_at read their messages.
        last.is_(None)
        & (func.coalesce(latest_message, created, conversations.c.loaded_at) < cutoff),
    )
