"""Initial warehouse schema: seven data tables and the pipeline's state and run log.

Revision ID: 0001
Revises:
Create Date: 2026-11-25

Tables are spelled out here, not built from etl/load/schema.py: a migration must keep meaning
what it meant when it shipped. tests/load/test_migrations.py checks both agree.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# timestamptz on PostgreSQL; on SQLite the application stores fixed-width UTC text.
TIMESTAMP = sa.DateTime(timezone=True)
JSON = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")


def _extra(owner: str) -> sa.Column[object]:
    return sa.Column(
        "extra",
        JSON,
        nullable=True,
        comment=(
            f"Every key the export sent for this {owner} that has no column (unknown keys, values "
            "of an unexpected type, unknown sub-keys nested under their parent key); NULL when "
            'nothing. Also "_original" (NUL/surrogate rule) and "_value" (a list item that was '
            "not an object)."
        ),
    )


def _schema() -> str | None:
    # env.py resolves the target schema (None on SQLite) and leaves it here.
    schema: str | None = context.config.attributes.get("schema")
    return schema


def upgrade() -> None:
    schema = _schema()
    op.create_table(
        "conversations",
        sa.Column(
            "id",
            sa.BigInteger(),
            autoincrement=False,
            nullable=False,
            comment="Conversation id from the export.",
        ),
        sa.Column(
            "reference",
            sa.Text(),
            nullable=True,
            comment="The conversation's reference (hex string).",
        ),
        sa.Column(
            "environment",
            sa.Text(),
            nullable=True,
            comment='Environment the conversation ran in, e.g. "live".',
        ),
        sa.Column(
            "created_at",
            TIMESTAMP,
            nullable=True,
            comment="When the conversation started (time.created), UTC.",
        ),
        sa.Column(
            "last_message_at",
            TIMESTAMP,
            nullable=True,
            comment="Time of the last message (time.last_message_created), UTC.",
        ),
        sa.Column(
            "reviewed",
            sa.Boolean(),
            nullable=True,
            comment="True when any session of the conversation was reviewed.",
        ),
        sa.Column(
            "quality_label",
            sa.Text(),
            nullable=True,
            comment="Quality label, taken from the last session.",
        ),
        sa.Column(
            "authentication_identifier",
            sa.Text(),
            nullable=True,
            comment="Identifier of the authenticated end user, if any.",
        ),
        sa.Column(
            "user_information",
            JSON,
            nullable=True,
            comment="User information object (keys not documented).",
        ),
        sa.Column(
            "message_count",
            sa.Integer(),
            nullable=True,
            comment="Number of messages in the export of this conversation.",
        ),
        _extra("conversation"),
        sa.Column(
            "raw",
            JSON,
            nullable=True,
            comment="The conversation exactly as exported; only filled when keep_raw is on.",
        ),
        sa.Column(
            "content_hash",
            sa.Text(),
            nullable=False,
            comment="Digest of the exported conversation; unchanged hash = unchanged data.",
        ),
        sa.Column(
            "exported_at",
            TIMESTAMP,
            nullable=True,
            comment="When the export this copy came from was taken (server time), UTC.",
        ),
        sa.Column(
            "loaded_at",
            TIMESTAMP,
            nullable=False,
            comment="When this copy was written to the warehouse, UTC.",
        ),
        sa.Column(
            "load_run_id",
            sa.Text(),
            nullable=False,
            comment="Run (etl_runs.run_id) that wrote this copy.",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conversations")),
        schema=schema,
        comment="One row per conversation: the latest exported copy.",
    )
    op.create_index(
        "ix_conversations_created_at", "conversations", ["created_at"], unique=False, schema=schema
    )
    op.create_index(
        "ix_conversations_last_message_at",
        "conversations",
        ["last_message_at"],
        unique=False,
        schema=schema,
    )
    op.create_table(
        "messages",
        sa.Column(
            "id",
            sa.BigInteger(),
            autoincrement=False,
            nullable=False,
            comment="Message id from the export.",
        ),
        sa.Column(
            "conversation_id",
            sa.BigInteger(),
            nullable=False,
            comment="The conversation this row belongs to (conversations.id).",
        ),
        sa.Column(
            "position",
            sa.Integer(),
            nullable=False,
            comment="0-based order of the message in its conversation.",
        ),
        sa.Column("time", TIMESTAMP, nullable=True, comment="When the message was created, UTC."),
        sa.Column(
            "type",
            sa.Text(),
            nullable=True,
            comment='"question" (end-user turn), "answer" (bot or human agent) or another type.',
        ),
        sa.Column(
            "is_human_chat",
            sa.Boolean(),
            nullable=True,
            comment="True when the message belongs to a human-agent chat.",
        ),
        sa.Column(
            "session_id", sa.Text(), nullable=True, comment="Session the message belongs to."
        ),
        sa.Column(
            "input",
            sa.Text(),
            nullable=True,
            comment="Question: what the end user typed (question.input).",
        ),
        sa.Column(
            "predicted_language",
            sa.Text(),
            nullable=True,
            comment="Question: detected language (question.predicted_language).",
        ),
        sa.Column(
            "sentiment",
            sa.Text(),
            nullable=True,
            comment="Question: detected sentiment (question.sentiment).",
        ),
        sa.Column(
            "labels", JSON, nullable=True, comment="Question: list of labels (question.labels)."
        ),
        sa.Column(
            "important_words",
            JSON,
            nullable=True,
            comment="Question: list of important words (question.important_words).",
        ),
        sa.Column(
            "source_url",
            sa.Text(),
            nullable=True,
            comment="Question: URL of the page the end user was on.",
        ),
        sa.Column(
            "device", sa.Text(), nullable=True, comment='Question: device class, e.g. "desktop".'
        ),
        sa.Column(
            "predicted_intent_id",
            sa.BigInteger(),
            nullable=True,
            comment="Question: predicted intent (intents.predicted.id).",
        ),
        sa.Column(
            "predicted_intent_title",
            sa.Text(),
            nullable=True,
            comment="Question: predicted intent's title.",
        ),
        sa.Column(
            "displayed_action_id",
            sa.BigInteger(),
            nullable=True,
            comment="Answer: action displayed (actions.displayed.id).",
        ),
        sa.Column(
            "displayed_action_type",
            sa.Text(),
            nullable=True,
            comment="Answer: displayed action's action_type.",
        ),
        sa.Column(
            "displayed_action_language",
            sa.Text(),
            nullable=True,
            comment="Answer: displayed action's language.",
        ),
        sa.Column(
            "displayed_action_transfer_to_human",
            sa.Boolean(),
            nullable=True,
            comment="Answer: displayed action transfers to a human.",
        ),
        sa.Column(
            "came_from_action_id",
            sa.BigInteger(),
            nullable=True,
            comment="Answer: action the user came from (actions.came_from.id).",
        ),
        sa.Column(
            "came_from_action_type",
            sa.Text(),
            nullable=True,
            comment="Answer: came-from action's action_type.",
        ),
        sa.Column(
            "came_from_action_language",
            sa.Text(),
            nullable=True,
            comment="Answer: came-from action's language.",
        ),
        sa.Column(
            "came_from_action_transfer_to_human",
            sa.Boolean(),
            nullable=True,
            comment="Answer: came-from action transfers to a human.",
        ),
        sa.Column(
            "came_from_intent_id",
            sa.BigInteger(),
            nullable=True,
            comment="Answer: intent that led here (intents.came_from.id).",
        ),
        sa.Column(
            "came_from_intent_title",
            sa.Text(),
            nullable=True,
            comment="Answer: came-from intent's title.",
        ),
        sa.Column(
            "system_action_trigger",
            sa.Text(),
            nullable=True,
            comment='Answer: what triggered a system action, e.g. "welcome_action".',
        ),
        sa.Column(
            "human_agent",
            JSON,
            nullable=True,
            comment="Answer: human agent object (shape undocumented).",
        ),
        sa.Column(
            "matched_filter", JSON, nullable=True, comment="Answer: the filter that matched."
        ),
        sa.Column(
            "sent_filter_values",
            JSON,
            nullable=True,
            comment="Filter values sent with the message.",
        ),
        sa.Column(
            "clicked_button_id",
            sa.BigInteger(),
            nullable=True,
            comment="Button the user clicked to get here (button_clicked.id).",
        ),
        sa.Column(
            "clicked_button_type",
            sa.Text(),
            nullable=True,
            comment='Clicked button\'s button_type ("action" or "url").',
        ),
        sa.Column(
            "clicked_button_text", sa.Text(), nullable=True, comment="Clicked button's text."
        ),
        sa.Column(
            "clicked_button_url",
            sa.Text(),
            nullable=True,
            comment="Clicked button's URL (url buttons).",
        ),
        sa.Column(
            "clicked_button_hidden",
            sa.Boolean(),
            nullable=True,
            comment="Clicked button was hidden.",
        ),
        sa.Column(
            "clicked_button_source_url",
            sa.Text(),
            nullable=True,
            comment="URL of the page where the button was clicked.",
        ),
        _extra("message"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_messages")),
        schema=schema,
        comment="One row per message (end-user question, bot/agent answer, other types).",
    )
    op.create_index(
        "ix_messages_conversation_id", "messages", ["conversation_id"], unique=False, schema=schema
    )
    op.create_index(
        "ix_messages_displayed_action_id",
        "messages",
        ["displayed_action_id"],
        unique=False,
        schema=schema,
    )
    op.create_index(
        "ix_messages_predicted_intent_id",
        "messages",
        ["predicted_intent_id"],
        unique=False,
        schema=schema,
    )
    op.create_index("ix_messages_time", "messages", ["time"], unique=False, schema=schema)
    op.create_table(
        "content",
        sa.Column(
            "message_id",
            sa.BigInteger(),
            autoincrement=False,
            nullable=False,
            comment="The answer message (messages.id).",
        ),
        sa.Column(
            "position",
            sa.Integer(),
            autoincrement=False,
            nullable=False,
            comment="0-based position in the message's content list.",
        ),
        sa.Column(
            "conversation_id",
            sa.BigInteger(),
            nullable=False,
            comment="The conversation this row belongs to (conversations.id).",
        ),
        sa.Column(
            "type",
            sa.Text(),
            nullable=True,
            comment='Content type: "text", "image", "video", "json", "link", "ssml" or another.',
        ),
        sa.Column(
            "time", TIMESTAMP, nullable=True, comment="When the content item was produced, UTC."
        ),
        sa.Column("text", sa.Text(), nullable=True, comment="text: the HTML text."),
        sa.Column("url", sa.Text(), nullable=True, comment="image/video: the media URL."),
        sa.Column("video_type", sa.Text(), nullable=True, comment='video: the host, e.g. "vimeo".'),
        sa.Column(
            "video_fullscreen", sa.Boolean(), nullable=True, comment="video: shown full screen."
        ),
        sa.Column("ssml", sa.Text(), nullable=True, comment="ssml: the speech markup."),
        sa.Column("json", JSON, nullable=True, comment="json: the JSON payload (any JSON value)."),
        _extra("content item"),
        sa.PrimaryKeyConstraint("message_id", "position", name=op.f("pk_content")),
        schema=schema,
        comment="One row per item of an answer's content list, in order.",
    )
    op.create_index(
        "ix_content_conversation_id", "content", ["conversation_id"], unique=False, schema=schema
    )
    op.create_index("ix_content_time", "content", ["time"], unique=False, schema=schema)
    op.create_table(
        "buttons",
        sa.Column(
            "message_id",
            sa.BigInteger(),
            autoincrement=False,
            nullable=False,
            comment="The answer message (messages.id).",
        ),
        sa.Column(
            "content_position",
            sa.Integer(),
            autoincrement=False,
            nullable=False,
            comment="Position of the link content item (content.position).",
        ),
        sa.Column(
            "position",
            sa.Integer(),
            autoincrement=False,
            nullable=False,
            comment="0-based position of the button in the link's button list.",
        ),
        sa.Column(
            "conversation_id",
            sa.BigInteger(),
            nullable=False,
            comment="The conversation this row belongs to (conversations.id).",
        ),
        sa.Column(
            "button_id",
            sa.BigInteger(),
            nullable=True,
            comment="The button definition's id (the same in many conversations).",
        ),
        sa.Column("button_type", sa.Text(), nullable=True, comment='"action" or "url".'),
        sa.Column("text", sa.Text(), nullable=True, comment="Button text."),
        sa.Column("url", sa.Text(), nullable=True, comment="Target URL (url buttons)."),
        sa.Column("hidden", sa.Boolean(), nullable=True, comment="The button was hidden."),
        sa.Column("attributes", JSON, nullable=True, comment="Button attributes object."),
        _extra("button"),
        sa.PrimaryKeyConstraint(
            "message_id", "content_position", "position", name=op.f("pk_buttons")
        ),
        schema=schema,
        comment="One row per button shown inside a link content item.",
    )
    op.create_index(
        "ix_buttons_conversation_id", "buttons", ["conversation_id"], unique=False, schema=schema
    )
    op.create_table(
        "intent_analysis",
        sa.Column(
            "message_id",
            sa.BigInteger(),
            autoincrement=False,
            nullable=False,
            comment="The question message (messages.id).",
        ),
        sa.Column(
            "position",
            sa.Integer(),
            autoincrement=False,
            nullable=False,
            comment="0-based position in question.analysis.",
        ),
        sa.Column(
            "conversation_id",
            sa.BigInteger(),
            nullable=False,
            comment="The conversation this row belongs to (conversations.id).",
        ),
        sa.Column("processed", sa.Text(), nullable=True, comment="The sentence as processed."),
        sa.Column("translated", sa.Text(), nullable=True, comment="The sentence as translated."),
        sa.Column("winner", sa.Boolean(), nullable=True, comment="This sentence's intent won."),
        sa.Column(
            "intent_id",
            sa.BigInteger(),
            nullable=True,
            comment="Intent found for the sentence (intents.id).",
        ),
        sa.Column("intent_title", sa.Text(), nullable=True, comment="Its title."),
        sa.Column(
            "intent_inherit_skill", sa.Boolean(), nullable=True, comment="Its inherit_skill flag."
        ),
        _extra("sentence analysis"),
        sa.PrimaryKeyConstraint("message_id", "position", name=op.f("pk_intent_analysis")),
        schema=schema,
        comment="One row per sentence analysis of a question.",
    )
    op.create_index(
        "ix_intent_analysis_conversation_id",
        "intent_analysis",
        ["conversation_id"],
        unique=False,
        schema=schema,
    )
    op.create_table(
        "intents",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False, comment="Intent id."),
        sa.Column("title", sa.Text(), nullable=True, comment="Title, as last seen."),
        sa.Column(
            "inherit_skill",
            sa.Boolean(),
            nullable=True,
            comment="inherit_skill flag, as last seen.",
        ),
        sa.Column(
            "last_seen_at",
            TIMESTAMP,
            nullable=True,
            comment="Time of the latest message this intent was seen in, UTC.",
        ),
        _extra("intent"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_intents")),
        schema=schema,
        comment="Intent dimension: the latest seen version of each intent.",
    )
    op.create_table(
        "actions",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False, comment="Action id."),
        sa.Column(
            "action_type",
            sa.Text(),
            nullable=True,
            comment='Action type, e.g. "content", as last seen.',
        ),
        sa.Column("language", sa.Text(), nullable=True, comment="Language, as last seen."),
        sa.Column(
            "transfer_to_human",
            sa.Boolean(),
            nullable=True,
            comment="The action transfers to a human agent, as last seen.",
        ),
        sa.Column(
            "last_seen_at",
            TIMESTAMP,
            nullable=True,
            comment="Time of the latest message this action was seen in, UTC.",
        ),
        _extra("action"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_actions")),
        schema=schema,
        comment="Action dimension: the latest seen version of each action.",
    )
    op.create_table(
        "etl_state",
        sa.Column(
            "state_key",
            sa.Text(),
            nullable=False,
            comment="Digest of site + environment + filter set.",
        ),
        sa.Column("site", sa.Text(), nullable=True, comment="The exporting site (host)."),
        sa.Column("environment", sa.Text(), nullable=True, comment="Environment filter, if any."),
        sa.Column("filters", JSON, nullable=True, comment="The request filters this state is for."),
        sa.Column(
            "watermark",
            TIMESTAMP,
            nullable=False,
            comment="Everything before this instant is loaded, UTC.",
        ),
        sa.Column(
            "updated_at", TIMESTAMP, nullable=True, comment="When the watermark last moved, UTC."
        ),
        sa.Column(
            "last_run_id", sa.Text(), nullable=True, comment="Run that last moved the watermark."
        ),
        sa.PrimaryKeyConstraint("state_key", name=op.f("pk_etl_state")),
        schema=schema,
        comment="Incremental state: one watermark per site and filter set.",
    )
    op.create_table(
        "etl_runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False, comment="Row id."),
        sa.Column(
            "run_id",
            sa.Text(),
            nullable=False,
            comment="One id per command invocation; a run has one row per window.",
        ),
        sa.Column(
            "state_key",
            sa.Text(),
            nullable=True,
            comment="etl_state.state_key the window belongs to.",
        ),
        sa.Column("command", sa.Text(), nullable=True, comment="The CLI command that ran."),
        sa.Column(
            "window_start", TIMESTAMP, nullable=True, comment="Window start (inclusive), UTC."
        ),
        sa.Column("window_end", TIMESTAMP, nullable=True, comment="Window end (exclusive), UTC."),
        sa.Column("started_at", TIMESTAMP, nullable=False, comment="When the window started, UTC."),
        sa.Column("finished_at", TIMESTAMP, nullable=True, comment="When the window ended, UTC."),
        sa.Column(
            "attempts",
            sa.Integer(),
            nullable=True,
            comment="Export requests made for the window (1 = no retry).",
        ),
        sa.Column("conversations", sa.Integer(), nullable=True, comment="Conversations received."),
        sa.Column(
            "expected_conversations",
            sa.Integer(),
            nullable=True,
            comment="Conversations the API announced (query_info).",
        ),
        sa.Column("rows", JSON, nullable=True, comment="Rows written per table."),
        sa.Column("bytes", sa.BigInteger(), nullable=True, comment="Response bytes received."),
        sa.Column(
            "seconds", sa.Double(), nullable=True, comment="Wall-clock seconds for the window."
        ),
        sa.Column("outcome", sa.Text(), nullable=False, comment='"ok", "failed" or "interrupted".'),
        sa.Column(
            "error",
            sa.Text(),
            nullable=True,
            comment="Error message when the window did not succeed.",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_etl_runs")),
        schema=schema,
        comment="Run log: one row per window attempted.",
    )
    op.create_index(
        "ix_etl_runs_started_at", "etl_runs", ["started_at"], unique=False, schema=schema
    )
    op.create_index(
        "ix_etl_runs_state_key_window_end",
        "etl_runs",
        ["state_key", "window_end"],
        unique=False,
        schema=schema,
    )


def downgrade() -> None:
    schema = _schema()
    op.drop_table("etl_runs", schema=schema)
    op.drop_table("etl_state", schema=schema)
    op.drop_table("actions", schema=schema)
    op.drop_table("intents", schema=schema)
    op.drop_table("intent_analysis", schema=schema)
    op.drop_table("buttons", schema=schema)
    op.drop_table("content", schema=schema)
    op.drop_table("messages", schema=schema)
    op.drop_table("conversations", schema=schema)
