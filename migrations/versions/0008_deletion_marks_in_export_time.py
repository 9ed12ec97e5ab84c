"""conversations.deleted_at holds the export time of the export that found it gone.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08

A window that loaded after another could clear that window's deletion mark although its own
export was taken first (before the conversation went): `deleted_at` held when the mark was
written, which could not be compared with an export. The loader now writes the export time
(`query_info.current_time`; when the mark was written only for an export without one) and
clears a mark only for a later export (etl/load/loader.py, confirm_returned). No data moves:
marks written before this revision keep their time, which a later export's time still follows.
This revision only describes the column anew (PostgreSQL's column comment; SQLite keeps none).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BEFORE = (
    "When a complete export of its window no longer returned it (pipeline.deletes = "
    '"soft"), UTC; NULL: present at the source. The views leave such rows out.'
)
_AFTER = (
    "The export time (query_info.current_time; else when it was marked) of a complete "
    'export of its window that no longer returned it (pipeline.deletes = "soft"), UTC; '
    "NULL: present at the source. The views leave such rows out."
)


def _comment(comment: str, existing: str) -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    schema: str | None = context.config.attributes.get("schema")
    op.alter_column(
        "conversations",
        "deleted_at",
        schema=schema,
        existing_type=sa.DateTime(timezone=True),
        existing_nullable=True,
        comment=comment,
        existing_comment=existing,
    )


def upgrade() -> None:
    _comment(_AFTER, _BEFORE)


def downgrade() -> None:
    _comment(_BEFORE, _AFTER)
