"""On PostgreSQL, the index on conversations.authentication_identifier is a hash index.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08

A B-tree entry must fit a third of a page (2,704 bytes): an identifier longer than that which
does not compress (a token, a signed blob) made PostgreSQL refuse the whole COPY, and with it
the window, which no quarantine could catch. A hash index stores a 4-byte hash whatever the
value's length, and serves what the index is for: erasure requests naming identifiers
(`authentication_identifier IN (...)`). SQLite's B-tree has no such limit and keeps its index.
Downgrading rebuilds the B-tree, which fails while such an identifier is stored.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEX = "ix_conversations_authentication_identifier"
_SET = sa.text("authentication_identifier IS NOT NULL")


def _rebuild(using: str) -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    schema: str | None = context.config.attributes.get("schema")
    op.drop_index(_INDEX, table_name="conversations", schema=schema)
    op.create_index(
        _INDEX,
        "conversations",
        ["authentication_identifier"],
        schema=schema,
        postgresql_using=using,
        postgresql_where=_SET,
    )


def upgrade() -> None:
    _rebuild("hash")


def downgrade() -> None:
    _rebuild("btree")
