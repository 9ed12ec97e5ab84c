"""Cheaper dashboard indexes: BRIN for message and content times, partial B-trees for the ids.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25

Four of the six dashboard indexes cost a first load about 14% of PostgreSQL's CPU (20,000
conversations, 149k messages, 179k content items: 1.90 -> 1.63 CPU-s, and 2.90 -> 2.62 s for
the whole `etl load-file`, four runs each):

- `messages.time`, `content.time`: BRIN on PostgreSQL. Rows arrive window by window, so these
  columns follow the physical order and a BRIN index serves range filters (`time >= ... AND
  time < ...`, what a dashboard's date filter sends). It cannot return rows in time order
  without such a filter: `conversations.created_at` and `last_message_at` keep their B-trees
  for "the latest conversations". `autosummarize` has each block range summarized once it is
  full rather than at the next vacuum. SQLite has no BRIN and keeps its B-trees.
- `messages.predicted_intent_id` (questions only) and `messages.displayed_action_id` (answers
  only): B-trees over the rows where the column is set, on both databases. `column = value`
  implies `column IS NOT NULL`, so lookups by id use them as before; a load maintains half the
  entries.

Index names are unchanged, so queries and hints that name them keep working. On PostgreSQL
each new index is built under a temporary name first (dashboards keep reading meanwhile;
loads wait), and only then are the old ones dropped and the new ones renamed, in the same
transaction: that swap needs a moment of exclusive access to `messages` and `content`, so it
waits for queries already running on them. Building takes a table scan per index (and a sort
for the B-trees): seconds per million messages.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIME_INDEXES = (("messages", "time"), ("content", "time"))
_ID_INDEXES = (("messages", "predicted_intent_id"), ("messages", "displayed_action_id"))


def _schema() -> str | None:
    # env.py resolves the target schema (None on SQLite) and leaves it here.
    schema: str | None = context.config.attributes.get("schema")
    return schema


def _postgres() -> bool:
    return bool(context.get_context().dialect.name == "postgresql")


def _replace(replacements: list[tuple[str, str, dict[str, object]]]) -> None:
    """Replace indexes keeping their names; on PostgreSQL, build all before dropping any."""
    schema = _schema()
    if not _postgres():  # SQLite cannot rename an index; readers keep their WAL snapshot
        for table, column, kw in replacements:
            op.drop_index(f"ix_{table}_{column}", table_name=table, schema=schema)
            op.create_index(f"ix_{table}_{column}", table, [column], schema=schema, **kw)
        return
    for table, column, kw in replacements:
        op.create_index(f"ix_{table}_{column}_new", table, [column], schema=schema, **kw)
    preparer = op.get_context().dialect.identifier_preparer
    prefix = f"{preparer.quote_schema(schema)}." if schema else ""
    for table, column, _ in replacements:
        name = f"ix_{table}_{column}"
        op.drop_index(name, table_name=table, schema=schema)
        # Identifiers only, quoted by the dialect: no value is ever formatted into SQL here.
        op.execute(
            f"ALTER INDEX {prefix}{preparer.quote(name + '_new')} RENAME TO {preparer.quote(name)}"
        )


def upgrade() -> None:
    replacements: list[tuple[str, str, dict[str, object]]] = []
    if _postgres():
        brin: dict[str, object] = {
            "postgresql_using": "brin",
            "postgresql_with": {"autosummarize": "on"},
        }
        replacements += [(table, column, brin) for table, column in _TIME_INDEXES]
    for table, column in _ID_INDEXES:
        predicate = sa.literal_column(column).is_not(None)
        where: dict[str, object] = {"postgresql_where": predicate, "sqlite_where": predicate}
        replacements.append((table, column, where))
    _replace(replacements)


def downgrade() -> None:
    tables = list(_ID_INDEXES) + (list(_TIME_INDEXES) if _postgres() else [])
    _replace([(table, column, {}) for table, column in tables])
