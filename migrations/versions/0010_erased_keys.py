"""etl_erased_keys: the references and identifiers `etl forget` erased, as keyed hashes.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08

An erasure by `--authentication-identifier` or `--reference` erased only the conversations
stored when it ran: one a window was loading at that moment, or one a later load brought, came
in with the person's identifier. The values are now recorded, hashed with BLAKE2b under a
random key stored here in etl_settings (`erasure.key`), and every load leaves out a
conversation or quarantined copy that has one (etl/load/erased.py). Downgrading drops the
table and the key: the erasures recorded so far then no longer keep anything out.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import context, op

from etl.load.erased import KEY_SETTING, new_key
from etl.load.schema import UTCDateTime

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _schema() -> str | None:
    schema: str | None = context.config.attributes.get("schema")
    return schema


def upgrade() -> None:
    schema = _schema()
    op.create_table(
        "etl_erased_keys",
        sa.Column(
            "kind",
            sa.Text(),
            nullable=False,
            comment='What the value was: "reference" or "authentication_identifier".',
        ),
        sa.Column(
            "digest",
            sa.Text(),
            nullable=False,
            comment="Keyed BLAKE2b hash of the value (key: etl_settings erasure.key), hex.",
        ),
        sa.Column(
            "forgotten_at",
            sa.DateTime(timezone=True),
            nullable=False,
            comment="When it was erased, UTC.",
        ),
        sa.Column(
            "run_id", sa.Text(), nullable=False, comment="The `etl forget` run (etl_runs.run_id)."
        ),
        sa.PrimaryKeyConstraint("kind", "digest", name="pk_etl_erased_keys"),
        schema=schema,
        comment=(
            "References and authentication identifiers `etl forget` erased, as keyed hashes "
            "(never the value): no load stores a conversation that has one."
        ),
    )
    settings = sa.table(
        "etl_settings",
        sa.column("key", sa.Text()),
        sa.column("value", sa.Text()),
        sa.column("updated_at", UTCDateTime()),
        schema=schema,
    )
    op.execute(
        settings.insert().values(key=KEY_SETTING, value=new_key(), updated_at=datetime.now(UTC))
    )


def downgrade() -> None:
    schema = _schema()
    op.drop_table("etl_erased_keys", schema=schema)
    settings = sa.table("etl_settings", sa.column("key", sa.Text()), schema=schema)
    op.execute(settings.delete().where(settings.c.key == KEY_SETTING))
