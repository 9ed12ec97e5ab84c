"""Metric views for dashboards, on both warehouses, and the local dates they group by.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07

- `conversations.local_date`, `conversations.local_hour`: the local day and hour the
  conversation started, in the reporting time zone, computed at load (etl.load.localtime)
  because SQLite has no time zone rules. `etl migrate` fills them for the rows stored before
  this revision, in the same transaction.
- `etl_settings`: the reporting zone those values are for.
- `ix_messages_clicked_button_id`, over the messages reached by a button only: the button
  views read every click.
- Views `conversation_facts`, `daily_metrics`, `intent_daily`, `button_daily`,
  `button_metrics` and `pipeline_daily`, defined in etl/load/views.py and, in words, in
  docs/metrics.md. They return the same rows on PostgreSQL and SQLite:
  two expressions differ in spelling (a duration, a UTC date), and every count is cast to
  BIGINT so that PostgreSQL's SUM does not turn it into a numeric.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

from etl.load.views import create_views, drop_views

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def _schema() -> str | None:
    # env.py resolves the target schema (None on SQLite) and leaves it here.
    schema: str | None = context.config.attributes.get("schema")
    return schema


def upgrade() -> None:
    schema = _schema()
    dialect = op.get_context().dialect.name
    op.add_column(
        "conversations",
        sa.Column(
            "local_date",
            sa.Date(),
            nullable=True,
            comment=(
                "Day created_at falls on in the reporting time zone (etl_settings); for the views."
            ),
        ),
        schema=schema,
    )
    op.add_column(
        "conversations",
        sa.Column(
            "local_hour",
            sa.SmallInteger(),
            nullable=True,
            comment="Hour (0-23) of created_at in the reporting time zone; for the views.",
        ),
        schema=schema,
    )
    op.create_index("ix_conversations_local_date", "conversations", ["local_date"], schema=schema)
    op.create_table(
        "etl_settings",
        sa.Column(
            "key", sa.Text(), nullable=False, comment='The setting, e.g. "reporting.timezone".'
        ),
        sa.Column(
            "value",
            sa.Text(),
            nullable=False,
            comment="The value the stored data was computed with.",
        ),
        sa.Column(
            "updated_at", TIMESTAMP, nullable=False, comment="When the value last changed, UTC."
        ),
        sa.PrimaryKeyConstraint("key", name="pk_etl_settings"),
        schema=schema,
        comment="Settings the stored data depends on, as they were when it was computed.",
    )
    # button_daily and button_metrics read the clicks of all time: a partial index over the
    # few messages reached by a button spares them a scan of every message.
    clicked = sa.text("clicked_button_id IS NOT NULL")
    op.create_index(
        "ix_messages_clicked_button_id",
        "messages",
        ["clicked_button_id"],
        schema=schema,
        postgresql_where=clicked,
        sqlite_where=clicked,
    )
    for statement in create_views(dialect, schema, personal_data=False, exact_seconds=False):
        op.execute(statement)


def downgrade() -> None:
    schema = _schema()
    for statement in drop_views(schema):
        op.execute(statement)
    op.drop_index("ix_messages_clicked_button_id", table_name="messages", schema=schema)
    op.drop_table("etl_settings", schema=schema)
    op.drop_index("ix_conversations_local_date", table_name="conversations", schema=schema)
    with op.batch_alter_table("conversations", schema=schema) as batch:
        batch.drop_column("local_hour")
        batch.drop_column("local_date")
