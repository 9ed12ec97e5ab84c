"""Personal data: erasure that sticks, retention, deletions detected at the source.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07

- `etl_tombstones`: conversations `etl forget` erased (the id and when, no personal data), so
  that no later load brings them back.
- `conversations.state_key`: the state key (site and filters) of the export a stored copy came
  from, so that a window detects deletions only among conversations exported with its own
  filters; NULL for copies loaded from a file, and for copies loaded before this revision
  until a window of the source returns them (a partial index finds those).
- `conversations.deleted_at`: set when a complete export of a window no longer returned the
  conversation (pipeline.deletes = "soft"); the views leave such rows out.
- Two partial indexes: `authentication_identifier` (erasure requests name a user) and
  `deleted_at` (the few soft-deleted rows).
- `etl_runs.conversations_forgotten`, `_deleted`, `_pruned`.
- The views again, without soft-deleted conversations, and `pipeline_daily` without the run
  log rows of `etl forget` and `etl prune` (etl/load/views.py, `personal_data`).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

from etl.load.views import create_views, drop_views

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)

_RUN_COLUMNS = {
    "conversations_forgotten": (
        "Conversations not loaded because `etl forget` erased them; for a forget, erased."
    ),
    "conversations_deleted": (
        "Stored conversations the window's complete export no longer returned: marked or "
        "removed (pipeline.deletes)."
    ),
    "conversations_pruned": "Conversations removed by retention (`etl prune`).",
}


def _schema() -> str | None:
    # env.py resolves the target schema (None on SQLite) and leaves it here.
    schema: str | None = context.config.attributes.get("schema")
    return schema


def _sparse_index(column: str, schema: str | None) -> None:
    predicate = sa.text(f"{column} IS NOT NULL")
    op.create_index(
        f"ix_conversations_{column}",
        "conversations",
        [column],
        schema=schema,
        postgresql_where=predicate,
        sqlite_where=predicate,
    )


def upgrade() -> None:
    schema = _schema()
    dialect = op.get_context().dialect.name
    for statement in drop_views(schema):
        op.execute(statement)
    op.add_column(
        "conversations",
        sa.Column(
            "state_key",
            sa.Text(),
            nullable=True,
            comment=(
                "etl_state.state_key of the source export this copy came from (its site and "
                "filters); NULL: from a saved file, or loaded before migration 0006 and not "
                "returned by a window since."
            ),
        ),
        schema=schema,
    )
    op.add_column(
        "conversations",
        sa.Column(
            "deleted_at",
            TIMESTAMP,
            nullable=True,
            comment=(
                "When a complete export of its window no longer returned it (pipeline.deletes = "
                '"soft"), UTC; NULL: present at the source. The views leave such rows out.'
            ),
        ),
        schema=schema,
    )
    _sparse_index("authentication_identifier", schema)
    _sparse_index("deleted_at", schema)
    # The copies stored before this revision, which have no state key yet: the first window
    # that returns one records its key (WindowLoader.confirm_returned).
    unkeyed = sa.text("state_key IS NULL")
    op.create_index(
        "ix_conversations_state_key",
        "conversations",
        ["state_key"],
        schema=schema,
        postgresql_where=unkeyed,
        sqlite_where=unkeyed,
    )
    for name, comment in _RUN_COLUMNS.items():
        op.add_column(
            "etl_runs", sa.Column(name, sa.Integer(), nullable=True, comment=comment), schema=schema
        )
    op.create_table(
        "etl_tombstones",
        sa.Column(
            "conversation_id",
            sa.BigInteger(),
            autoincrement=False,
            nullable=False,
            comment="A conversation `etl forget` erased: no load brings it back.",
        ),
        sa.Column("forgotten_at", TIMESTAMP, nullable=False, comment="When it was erased, UTC."),
        sa.Column(
            "run_id", sa.Text(), nullable=False, comment="The `etl forget` run (etl_runs.run_id)."
        ),
        sa.PrimaryKeyConstraint("conversation_id", name="pk_etl_tombstones"),
        schema=schema,
        comment="Erased conversations: the id and when, nothing else (no personal data).",
    )
    for statement in create_views(dialect, schema, personal_data=True, exact_seconds=False):
        op.execute(statement)


def downgrade() -> None:
    schema = _schema()
    dialect = op.get_context().dialect.name
    for statement in drop_views(schema):
        op.execute(statement)
    op.drop_table("etl_tombstones", schema=schema)
    with op.batch_alter_table("etl_runs", schema=schema) as batch:
        for name in reversed(_RUN_COLUMNS):
            batch.drop_column(name)
    op.drop_index("ix_conversations_state_key", table_name="conversations", schema=schema)
    op.drop_index("ix_conversations_deleted_at", table_name="conversations", schema=schema)
    op.drop_index(
        "ix_conversations_authentication_identifier", table_name="conversations", schema=schema
    )
    with op.batch_alter_table("conversations", schema=schema) as batch:
        batch.drop_column("deleted_at")
        batch.drop_column("state_key")
    for statement in create_views(dialect, schema, personal_data=False, exact_seconds=False):
        op.execute(statement)
