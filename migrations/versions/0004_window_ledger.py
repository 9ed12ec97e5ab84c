"""The window ledger: windows claimed through the warehouse, loaded in parallel.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07

`etl_windows` holds one row per state key and window: who is loading it (a claim, with a
heartbeat), whether it loaded or failed, and when it last committed. Several processes claim
windows from it instead of taking one lock per warehouse, and the watermark is the end of the
contiguous run of committed windows. Windows loaded before this revision have no row: the
watermark already covers them.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def _schema() -> str | None:
    # env.py resolves the target schema (None on SQLite) and leaves it here.
    schema: str | None = context.config.attributes.get("schema")
    return schema


def upgrade() -> None:
    schema = _schema()
    op.create_table(
        "etl_windows",
        sa.Column(
            "state_key", sa.Text(), nullable=False, comment="etl_state.state_key of the window."
        ),
        sa.Column(
            "window_start", TIMESTAMP, nullable=False, comment="Window start (inclusive), UTC."
        ),
        sa.Column("window_end", TIMESTAMP, nullable=False, comment="Window end (exclusive), UTC."),
        sa.Column(
            "state",
            sa.Text(),
            nullable=False,
            comment='"claimed" (a process is loading it), "loaded" or "failed" (its last load).',
        ),
        sa.Column(
            "claimed_by",
            sa.Text(),
            nullable=True,
            comment="The process holding the claim (host:pid:run), while claimed.",
        ),
        sa.Column(
            "heartbeat_at",
            TIMESTAMP,
            nullable=True,
            comment="When the holder last said it is alive, UTC.",
        ),
        sa.Column(
            "attempts",
            sa.Integer(),
            nullable=True,
            comment="Export requests made for the window, over all its loads.",
        ),
        sa.Column("run_id", sa.Text(), nullable=True, comment="Run that last claimed it."),
        sa.Column(
            "committed_at",
            TIMESTAMP,
            nullable=True,
            comment="When a load of it last committed, UTC; NULL: it never did (a hole).",
        ),
        sa.Column("error", sa.Text(), nullable=True, comment="Why its last load failed."),
        sa.PrimaryKeyConstraint("state_key", "window_start", "window_end", name="pk_etl_windows"),
        schema=schema,
        comment="Window ledger: which windows are claimed, loaded or failed, per state key.",
    )
    op.create_index(
        "ix_etl_windows_state_key_window_end",
        "etl_windows",
        ["state_key", "window_end"],
        schema=schema,
    )


def downgrade() -> None:
    schema = _schema()
    op.drop_index("ix_etl_windows_state_key_window_end", table_name="etl_windows", schema=schema)
    op.drop_table("etl_windows", schema=schema)
