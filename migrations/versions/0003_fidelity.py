"""Fidelity: occurrence values on messages, per-window outcome counts, the export's own
elements in the run log, and the quarantine table.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29

- `messages.predicted_intent_inherit_skill`, `messages.came_from_intent_inherit_skill`: an
  intent's inherit_skill as it was in that message (it may differ from one message to the
  next; the `intents` table holds one value per intent).
- `intents.<attribute>_seen_at`, `actions.<attribute>_seen_at`: when each attribute's value was
  seen, so that the dimension keeps the latest non-null value per attribute whatever order
  windows are loaded in (rows loaded before take their last_seen_at).
- `etl_runs`: what happened to each conversation of the window (new, changed, unchanged,
  older than the stored copy, rejected), and the export's `query_info`, `post_query_info` and
  elements of an unknown type, as sent.
- `etl_rejects`: conversations that could not be loaded, whole, as the server sent them.
- SQLite only: every JSON column is declared TEXT instead of JSON. JSON gives a column NUMERIC
  affinity, under which a value that is one number is stored as an SQLite number (1.0 read
  back as 1, an integer beyond 64 bits as a rounded float); TEXT keeps the JSON text. Each
  column is replaced by a copy (SQLite cannot change a column's type), which rewrites the
  table's rows: a while on a large SQLite warehouse. A value already stored as a number keeps
  the value it had (a float with 17 significant digits).

Existing rows get the new message columns when their conversation is loaded again: the
content hash now includes the normalization's version, so `etl backfill` over loaded ranges
rewrites every conversation once (see docs/schema.md, "Upgrading").
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)
JSON = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
# On SQLite the JSON columns become TEXT (see above); on PostgreSQL they stay jsonb.
JSON_TEXT = (
    sa.JSON(none_as_null=True)
    .with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
    .with_variant(sa.Text(), "sqlite")
)
_SQLITE_JSON_COLUMNS = {
    "conversations": ("user_information", "extra", "raw"),
    "messages": (
        "labels",
        "important_words",
        "human_agent",
        "matched_filter",
        "sent_filter_values",
        "extra",
    ),
    "content": ("json", "extra"),
    "buttons": ("attributes", "extra"),
    "intent_analysis": ("extra",),
    "intents": ("extra",),
    "actions": ("extra",),
    "etl_state": ("filters",),
    "etl_runs": ("rows",),
}

_MESSAGE_COLUMNS = (
    (
        "predicted_intent_inherit_skill",
        "Question: predicted intent's inherit_skill, as in this message.",
    ),
    (
        "came_from_intent_inherit_skill",
        "Answer: came-from intent's inherit_skill, as in this message.",
    ),
)
_SEEN = {
    "intents": ("title", "inherit_skill", "extra"),
    "actions": ("action_type", "language", "transfer_to_human", "extra"),
}
_RUN_COUNTS = (
    ("conversations_new", "Conversations not stored before, loaded."),
    ("conversations_changed", "Stored conversations replaced by a changed copy."),
    ("conversations_unchanged", "Conversations identical to the stored copy."),
    (
        "conversations_older",
        "Conversations not loaded: the stored copy is from a later (or a known) export.",
    ),
    ("conversations_rejected", "Conversations put in etl_rejects (quarantine)."),
)
_RUN_JSON = (
    ("query_info", "The export's query_info element, as sent."),
    ("post_query_info", "The export's post_query_info element, as sent."),
    (
        "unknown_elements",
        "Top-level export elements of an unknown type, as sent (a list); NULL when none.",
    ),
)
_DIMENSION_COMMENTS = {
    "intents": (
        "Intent dimension, a convenience: per attribute, the latest non-null value seen. "
        "Each message keeps the values of its own reference.",
        "Intent dimension: the latest seen version of each intent.",
        {
            "title": ("Title: the latest non-null value seen.", "Title, as last seen."),
            "inherit_skill": (
                "inherit_skill flag: the latest non-null value seen.",
                "inherit_skill flag, as last seen.",
            ),
        },
    ),
    "actions": (
        "Action dimension, a convenience: per attribute, the latest non-null value seen. "
        "Each message keeps the values of its own reference.",
        "Action dimension: the latest seen version of each action.",
        {
            "action_type": (
                'Action type, e.g. "content": the latest non-null value seen.',
                'Action type, e.g. "content", as last seen.',
            ),
            "language": ("Language: the latest non-null value seen.", "Language, as last seen."),
            "transfer_to_human": (
                "The action transfers to a human agent: the latest non-null value seen.",
                "The action transfers to a human agent, as last seen.",
            ),
        },
    ),
}


def _schema() -> str | None:
    # env.py resolves the target schema (None on SQLite) and leaves it here.
    schema: str | None = context.config.attributes.get("schema")
    return schema


def _postgres() -> bool:
    return bool(context.get_context().dialect.name == "postgresql")


def upgrade() -> None:
    schema = _schema()
    with op.batch_alter_table("messages", schema=schema) as batch:
        for name, comment in _MESSAGE_COLUMNS:
            batch.add_column(sa.Column(name, sa.Boolean(), nullable=True, comment=comment))
    with op.batch_alter_table("etl_runs", schema=schema) as batch:
        for name, comment in _RUN_COUNTS:
            batch.add_column(sa.Column(name, sa.Integer(), nullable=True, comment=comment))
        for name, comment in _RUN_JSON:
            batch.add_column(sa.Column(name, JSON_TEXT, nullable=True, comment=comment))
    for table, attributes in _SEEN.items():
        with op.batch_alter_table(table, schema=schema) as batch:
            for name in attributes:
                comment = f"Time of the message whose reference gave `{name}` its value, UTC."
                batch.add_column(
                    sa.Column(f"{name}_seen_at", TIMESTAMP, nullable=True, comment=comment)
                )
        # Rows loaded before: each value was last seen at last_seen_at (what the old upsert
        # kept), so an older or undated reference does not replace it.
        rows = sa.table(
            table,
            sa.column("last_seen_at"),
            *(sa.column(c) for name in attributes for c in (name, f"{name}_seen_at")),
            schema=schema,
        )
        for name in attributes:
            op.execute(
                rows.update()
                .where(rows.c[name].is_not(None))
                .values({f"{name}_seen_at": rows.c.last_seen_at})
            )
    _comment_dimensions(schema, new=True)
    if not _postgres():
        _sqlite_json_columns(sa.JSON(none_as_null=True), sa.Text())
    op.create_table(
        "etl_rejects",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True, comment="Row id."),
        sa.Column(
            "body_hash",
            sa.Text(),
            nullable=False,
            comment="Digest of `body`: the same rejected text is kept once.",
        ),
        sa.Column(
            "conversation_id",
            sa.BigInteger(),
            nullable=True,
            comment="The conversation's id, when it is a 64-bit integer.",
        ),
        sa.Column(
            "state_key",
            sa.Text(),
            nullable=True,
            comment='etl_state.state_key of the window ("file" keys for files).',
        ),
        sa.Column(
            "source",
            sa.Text(),
            nullable=True,
            comment="The window (start/end) or the file the conversation came from.",
        ),
        sa.Column(
            "window_start", TIMESTAMP, nullable=True, comment="Window start (inclusive), UTC."
        ),
        sa.Column("window_end", TIMESTAMP, nullable=True, comment="Window end (exclusive), UTC."),
        sa.Column(
            "position",
            sa.Integer(),
            nullable=True,
            comment="0-based position of the conversation in its export stream.",
        ),
        sa.Column(
            "exported_at",
            TIMESTAMP,
            nullable=True,
            comment="Export time of the copy (query_info.current_time); NULL when unknown.",
        ),
        sa.Column(
            "error", sa.Text(), nullable=False, comment="Why the conversation could not be loaded."
        ),
        sa.Column(
            "body",
            sa.Text(),
            nullable=False,
            comment="The conversation as the server sent it (JSON text).",
        ),
        sa.Column("run_id", sa.Text(), nullable=False, comment="Run that last rejected it."),
        sa.Column(
            "rejected_at", TIMESTAMP, nullable=False, comment="When it was first rejected, UTC."
        ),
        sa.Column(
            "last_tried_at",
            TIMESTAMP,
            nullable=False,
            comment="When a load last failed on it, UTC.",
        ),
        sa.Column(
            "attempts",
            sa.Integer(),
            nullable=False,
            comment="Loads that failed on it (windows and reprocess-rejects).",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_etl_rejects"),
        sa.UniqueConstraint("body_hash", name="uq_etl_rejects_body_hash"),
        comment="Quarantine: conversations that could not be loaded, kept whole until they can.",
        schema=schema,
    )
    op.create_index(
        "ix_etl_rejects_conversation_id", "etl_rejects", ["conversation_id"], schema=schema
    )


def downgrade() -> None:
    schema = _schema()
    if not _postgres():
        _sqlite_json_columns(sa.Text(), sa.JSON(none_as_null=True))
    op.drop_index("ix_etl_rejects_conversation_id", table_name="etl_rejects", schema=schema)
    op.drop_table("etl_rejects", schema=schema)
    _comment_dimensions(schema, new=False)
    for table, attributes in _SEEN.items():
        with op.batch_alter_table(table, schema=schema) as batch:
            for name in attributes[::-1]:
                batch.drop_column(f"{name}_seen_at")
    with op.batch_alter_table("etl_runs", schema=schema) as batch:
        for name, _ in (*_RUN_JSON[::-1], *_RUN_COUNTS[::-1]):
            batch.drop_column(name)
    with op.batch_alter_table("messages", schema=schema) as batch:
        for name, _ in _MESSAGE_COLUMNS[::-1]:
            batch.drop_column(name)


def _sqlite_json_columns(
    old: sa.types.TypeEngine[object], new: sa.types.TypeEngine[object]
) -> None:
    """Declare SQLite's JSON columns `new` instead of `old`.

    SQLite cannot change a column's type; rebuilding each table (Alembic's batch mode) needs
    the live database to reflect it, which `etl migrate --sql` has not. So each column is
    replaced in place with plain statements: add the new column, copy, drop the old one, take
    its name. The column moves to the end of its table (the loader names its columns). A view
    of your own that reads the column makes DROP COLUMN fail: drop the view, migrate, create it
    again.
    """
    preparer = op.get_context().dialect.identifier_preparer
    new_ddl = new.compile(dialect=op.get_context().dialect)
    for table, columns in _SQLITE_JSON_COLUMNS.items():
        t = preparer.quote(table)
        for column in columns:
            # Identifiers only, quoted by the dialect: no value is formatted into SQL here.
            c, tmp = preparer.quote(column), preparer.quote(f"{column}__retyped")
            op.execute(f"ALTER TABLE {t} ADD COLUMN {tmp} {new_ddl}")
            # A REAL (a JSON value that was one float, under the old NUMERIC affinity) as
            # text with 17 significant digits, which reads back as the same double (a plain
            # copy would keep 15).
            source = sa.column(column)
            copied = sa.case(
                (sa.func.typeof(source) == "real", sa.func.printf("%!.17g", source)),
                else_=source,
            )
            op.execute(
                sa.table(table, source, sa.column(f"{column}__retyped"))
                .update()
                .values({f"{column}__retyped": copied})
            )
            op.execute(f"ALTER TABLE {t} DROP COLUMN {c}")
            op.execute(f"ALTER TABLE {t} RENAME COLUMN {tmp} TO {c}")


def _comment_dimensions(schema: str | None, *, new: bool) -> None:
    """The dimension tables' comments say what their values are (SQLite keeps no comments)."""
    if not _postgres():
        return
    for table, (new_comment, old_comment, columns) in _DIMENSION_COMMENTS.items():
        op.create_table_comment(
            table,
            new_comment if new else old_comment,
            existing_comment=old_comment if new else new_comment,
            schema=schema,
        )
        for column, (new_text, old_text) in columns.items():
            op.alter_column(
                table,
                column,
                comment=new_text if new else old_text,
                existing_comment=old_text if new else new_text,
                existing_nullable=True,
                schema=schema,
            )
