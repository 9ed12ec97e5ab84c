"""Erasure and retention in the warehouse: which conversations, how many rows, and the deletes.

`etl forget` erases conversations for good: their rows, their copies in the quarantine, and a
tombstone (the id and when, nothing else) that every later load reads (WindowLoader.changed),
so that no backfill, load-file or reprocess-rejects brings them back. `etl prune` removes the
conversations past the retention period, without tombstones: a backfill over such old dates
loads them again, and the next prune removes them again. Dimension rows (intents, actions)
stay: they describe the bot, not a person.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import Connection, MetaData, func, or_, select

from etl.load.engine import dialect_insert
from etl.load.loader import WindowLoader, chunks
from etl.load.schema import table_of
from etl.normalize import CHILD_TABLES

# The tables a conversation's rows are in, counted for the run log and --dry-run.
CONVERSATION_TABLES: Final = ("conversations", *CHILD_TABLES)


def matching(
    conn: Connection,
    metadata: MetaData,
    *,
    ids: Collection[int] = (),
    references: Collection[str] = (),
    identifiers: Collection[str] = (),
) -> list[int]:
    """The conversations an erasure request names: `ids` as given (stored or not: a tombstone
    also keeps one not loaded yet out), and those stored or quarantined with one of the
    `references` or authentication `identifiers`."""
    found = set(ids)
    conversations = table_of(metadata, "conversations")
    for column, values in (
        (conversations.c.reference, list(references)),
        (conversations.c.authentication_identifier, list(identifiers)),
    ):
        for start in range(0, len(values), 500):
            query = select(conversations.c.id).where(column.in_(values[start : start + 500]))
            found.update(conn.execute(query).scalars())
    if references or identifiers:
        found.update(_quarantined(conn, metadata, set(references), set(identifiers)))
    return sorted(found)


def _quarantined(
    conn: Connection, metadata: MetaData, references: set[str], identifiers: set[str]
) -> list[int]:
    """Quarantined conversations with one of the references or identifiers. The quarantine
    keeps the text as sent, so each body is read: it is small, and an erasure is rare."""
    rejects = table_of(metadata, "etl_rejects")
    found = []
    query = select(rejects.c.conversation_id, rejects.c.body).where(
        rejects.c.conversation_id.is_not(None)
    )
    for conversation_id, body in conn.execute(query):
        try:
            conversation: Any = json.loads(body)
        except ValueError:
            continue
        if not isinstance(conversation, dict):
            continue
        if (
            conversation.get("reference") in references
            or conversation.get("authentication_identifier") in identifiers
        ):
            found.append(conversation_id)
    return found


def count_rows(conn: Connection, metadata: MetaData, ids: Sequence[int]) -> dict[str, int]:
    """Rows per table that belong to the conversations `ids` (etl_rejects included)."""
    counts = dict.fromkeys((*CONVERSATION_TABLES, "etl_rejects"), 0)
    for name in counts:
        table = table_of(metadata, name)
        column = table.c.id if name == "conversations" else table.c.conversation_id
        for chunk in chunks(ids):
            query = select(func.count()).select_from(table).where(column.in_(chunk))
            counts[name] += conn.execute(query).scalar_one()
    return counts


def forget(
    conn: Connection, metadata: MetaData, loader: WindowLoader, ids: Sequence[int], *, run_id: str
) -> dict[str, int]:
    """Erase the conversations `ids` in the caller's transaction: tombstones first, then their
    rows (locked as a window locks them, see WindowLoader.erase) and quarantined copies. The
    rows deleted per table."""
    counts = count_rows(conn, metadata, ids)
    tombstones = table_of(metadata, "etl_tombstones")
    now = datetime.now(UTC)
    for chunk in chunks(ids):
        conn.execute(
            dialect_insert(conn, tombstones)
            .values([{"conversation_id": i, "forgotten_at": now, "run_id": run_id} for i in chunk])
            .on_conflict_do_nothing(index_elements=[tombstones.c.conversation_id])
        )
    loader.erase(list(ids))
    rejects = table_of(metadata, "etl_rejects")
    for chunk in chunks(ids):
        conn.execute(rejects.delete().where(rejects.c.conversation_id.in_(chunk)))
    return counts


def expired(conn: Connection, metadata: MetaData, cutoff: datetime, *, limit: int) -> list[int]:
    """Up to `limit` conversations whose last message (or, without one, whose start) is
    before `cutoff`, in id order."""
    conversations = table_of(metadata, "conversations")
    last = conversations.c.last_message_at
    query = (
        select(conversations.c.id)
        .where(
            or_(
                last < cutoff,
                last.is_(None) & (conversations.c.created_at < cutoff),
            )
        )
        .order_by(conversations.c.id)
        .limit(limit)
    )
    return list(conn.execute(query).scalars())
