"""Durations exact to the second on SQLite too: the views again.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08

`conversation_facts.duration_seconds` (and so `daily_metrics.avg_duration_seconds` and the
report's average duration) took the whole seconds from SQLite's strftime, which rounds a
fraction of a second to milliseconds: a conversation that started or ended at ".9995" or later
in a second was a second off on SQLite, where PostgreSQL had it exact (etl/load/views.py,
_DURATION). The views are recreated on SQLite with the fraction cut before strftime; on
PostgreSQL, where their SQL does not change, they are left as they are (with their grants).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import context, op

from etl.load.views import create_views, drop_views

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _schema() -> str | None:
    # env.py resolves the target schema (None on SQLite) and leaves it here.
    schema: str | None = context.config.attributes.get("schema")
    return schema


def _recreate(*, exact_seconds: bool) -> None:
    schema = _schema()
    dialect = op.get_context().dialect.name
    before = create_views(dialect, schema, personal_data=True, exact_seconds=not exact_seconds)
    if create_views(dialect, schema, personal_data=True, exact_seconds=exact_seconds) == before:
        # PostgreSQL's views do not change. Dropping them anyway would take their grants
        # (a role given SELECT on the views alone) and fail on a view of the user's own that
        # reads them.
        return
    for statement in drop_views(schema):
        op.execute(statement)
    for statement in create_views(dialect, schema, personal_data=True, exact_seconds=exact_seconds):
        op.execute(statement)


def upgrade() -> None:
    _recreate(exact_seconds=True)


def downgrade() -> None:
    _recreate(exact_seconds=False)
