"""The warehouse schema as SQLAlchemy Core metadata, shared by the loader and the migrations."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Double,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    Table,
    Text,
    TypeDecorator,
    literal_column,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles

NAMING_CONVENTION: Final[dict[str, str]] = {
    "pk": "pk_%(table_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always an aware UTC datetime in Python.

    PostgreSQL stores `timestamptz`. SQLite has no timestamp type: SQLAlchemy stores text and
    drops the offset, so we convert to UTC first; the fixed-width "YYYY-MM-DD HH:MM:SS.ffffff"
    text then sorts and compares chronologically, and reads get the UTC zone back.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            # A naive datetime is ambiguous; storing it would shift times silently.
            raise ValueError(f"naive datetime {value.isoformat()} given for a UTC timestamp column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class SQLiteJSONText(sqlite.JSON):
    """JSON in a column declared TEXT on SQLite.

    A column declared JSON has NUMERIC affinity in SQLite, which turns a value that is one
    number into an SQLite number: 1.0 reads back as 1, -0.0 as 0, and an integer beyond 64
    bits as a rounded float. TEXT affinity keeps the JSON text as written; SQLite's JSON
    functions read it the same way (migration 0003).
    """

    cache_ok = True


@compiles(SQLiteJSONText, "sqlite")
def _sqlite_json_text(type_: SQLiteJSONText, compiler: Any, **kw: Any) -> str:
    return "TEXT"


def json_type() -> JSON:
    """JSONB on PostgreSQL, JSON text on SQLite; Python None is SQL NULL (not JSON 'null')."""
    return (
        JSON(none_as_null=True)
        .with_variant(JSONB(none_as_null=True), "postgresql")
        .with_variant(SQLiteJSONText(none_as_null=True), "sqlite")
    )


def _c(name: str, type_: Any, comment: str, *, nullable: bool = True, **kw: Any) -> Column[Any]:
    return Column(name, type_, nullable=nullable, comment=comment, **kw)


def _pk(name: str, type_: Any, comment: str) -> Column[Any]:
    return Column(
        name, type_, primary_key=True, autoincrement=False, nullable=False, comment=comment
    )


def _ix(table: str, *columns: str) -> Index:
    return Index(f"ix_{table}_{'_'.join(columns)}", *columns)


def _time_ix(table: str, column: str) -> Index:
    """A time index: BRIN on PostgreSQL, B-tree on SQLite.

    Rows arrive window by window, so a time column follows the physical order, and a BRIN
    index (min/max per block of pages) serves range filters from a few pages that cost a load
    next to nothing to keep up, where a B-tree took an index insert per row (migration 0002
    has the figures). It cannot return rows in time order without a range filter
    (`ORDER BY time DESC LIMIT n` over a whole table): `conversations` keeps B-trees for that.
    """
    # autosummarize: each block range is summarized when full, not at the next vacuum.
    return Index(
        f"ix_{table}_{column}",
        column,
        postgresql_using="brin",
        postgresql_with={"autosummarize": "on"},
    )


def _sparse_ix(table: str, column: str, *, postgresql_using: str | None = None) -> Index:
    """A B-tree over the rows where `column` is set: questions or answers only, the few
    conversations with an authenticated user or soft-deleted.

    `column = value` implies `column IS NOT NULL`, so both databases use it for lookups, and a
    load maintains only the entries of the rows that have a value. `postgresql_using="hash"`
    for text of any length that is only looked up by value: PostgreSQL refuses a B-tree entry
    longer than a third of a page (2,704 bytes after compression), and with it the whole COPY.
    """
    predicate = literal_column(column).is_not(None)
    return Index(
        f"ix_{table}_{column}",
        column,
        postgresql_using=postgresql_using,
        postgresql_where=predicate,
        sqlite_where=predicate,
    )


def _extra(owner: str) -> Column[Any]:
    return _c(
        "extra",
        json_type(),
        (
            f"Every key the export sent for this {owner} that has no column (unknown keys, values "
            "of an unexpected type, unknown sub-keys nested under their parent key); NULL when "
            'nothing. Also "_original" (NUL/surrogate rule) and "_value" (a list item that was '
            "not an object)."
        ),
    )


def _seen_columns(*attributes: str) -> list[Column[Any]]:
    """When each dimension attribute's value was seen: the loader keeps the latest per
    attribute, whatever order windows are loaded in."""
    return [
        _c(
            f"{name}_seen_at",
            UTCDateTime,
            f"Time of the message whose reference gave `{name}` its value, UTC.",
        )
        for name in attributes
    ]


def _conversation_id() -> Column[Any]:
    return _c(
        "conversation_id",
        BigInteger,
        "The conversation this row belongs to (conversations.id).",
        nullable=False,
    )


def _add_data_tables(md: MetaData) -> None:
    # No foreign keys between data tables: a reloaded conversation replaces its child rows in
    # bulk (delete by conversation_id, then COPY), and dimension rows (intents, actions) are
    # upserted after the facts. FKs would force an order, cost a lookup per row, and add nothing
    # the loader does not already guarantee inside one transaction.
    Table(
        "conversations",
        md,
        _pk("id", BigInteger, "Conversation id from the export."),
        _c("reference", Text, "The conversation's reference (hex string)."),
        _c("environment", Text, 'Environment the conversation ran in, e.g. "live".'),
        _c("created_at", UTCDateTime, "When the conversation started (time.created), UTC."),
        _c(
            "last_message_at",
            UTCDateTime,
            "Time of the last message (time.last_message_created), UTC.",
        ),
        _c("reviewed", Boolean, "True when any session of the conversation was reviewed."),
        _c("quality_label", Text, "Quality label, taken from the last session."),
        _c("authentication_identifier", Text, "Identifier of the authenticated end user, if any."),
        _c("user_information", json_type(), "User information object (keys not documented)."),
        _c("message_count", Integer, "Number of messages in the export of this conversation."),
        _extra("conversation"),
        _c(
            "raw",
            json_type(),
            "The conversation exactly as exported; only filled when keep_raw is on.",
        ),
        _c(
            "content_hash",
            Text,
            "Digest of the exported conversation; unchanged hash = unchanged data.",
            nullable=False,
        ),
        _c(
            "exported_at",
            UTCDateTime,
            "When the export this copy came from was taken (server time), UTC.",
        ),
        _c(
            "loaded_at",
            UTCDateTime,
            "When this copy was written to the warehouse, UTC.",
            nullable=False,
        ),
        _c("load_run_id", Text, "Run (etl_runs.run_id) that wrote this copy.", nullable=False),
        _c(
            "local_date",
            Date,
            "Day created_at falls on in the reporting time zone (etl_settings); for the views.",
        ),
        _c(
            "local_hour",
            SmallInteger,
            "Hour (0-23) of created_at in the reporting time zone; for the views.",
        ),
        _c(
            "state_key",
            Text,
            "etl_state.state_key of the source export this copy came from (its site and "
            "filters); NULL: from a saved file, or loaded before migration 0006 and not "
            "returned by a window since.",
        ),
        _c(
            "deleted_at",
            UTCDateTime,
            "The export time (query_info.current_time; else when it was marked) of a complete "
            'export of its window that no longer returned it (pipeline.deletes = "soft"), UTC; '
            "NULL: present at the source. The views leave such rows out.",
        ),
        _ix("conversations", "created_at"),
        _ix("conversations", "last_message_at"),
        _ix("conversations", "local_date"),
        # Erasure requests look identifiers up by value; a user's may be longer than a
        # B-tree entry can be (migration 0009).
        _sparse_ix("conversations", "authentication_identifier", postgresql_using="hash"),
        _sparse_ix("conversations", "deleted_at"),
        # The copies without a state key (loaded before migration 0006, or from a file).
        Index(
            "ix_conversations_state_key",
            "state_key",
            postgresql_where=literal_column("state_key").is_(None),
            sqlite_where=literal_column("state_key").is_(None),
        ),
        comment="One row per conversation: the latest exported copy.",
    )
    Table(
        "messages",
        md,
        _pk("id", BigInteger, "Message id from the export."),
        _conversation_id(),
        _c(
            "position", Integer, "0-based order of the message in its conversation.", nullable=False
        ),
        _c("time", UTCDateTime, "When the message was created, UTC."),
        _c(
            "type",
            Text,
            '"question" (end-user turn), "answer" (bot or human agent) or another type.',
        ),
        _c("is_human_chat", Boolean, "True when the message belongs to a human-agent chat."),
        _c("session_id", Text, "Session the message belongs to."),
        _c("input", Text, "Question: what the end user typed (question.input)."),
        _c(
            "predicted_language", Text, "Question: detected language (question.predicted_language)."
        ),
        _c("sentiment", Text, "Question: detected sentiment (question.sentiment)."),
        _c("labels", json_type(), "Question: list of labels (question.labels)."),
        _c(
            "important_words",
            json_type(),
            "Question: list of important words (question.important_words).",
        ),
        _c("source_url", Text, "Question: URL of the page the end user was on."),
        _c("device", Text, 'Question: device class, e.g. "desktop".'),
        _c("predicted_intent_id", BigInteger, "Question: predicted intent (intents.predicted.id)."),
        _c("predicted_intent_title", Text, "Question: predicted intent's title."),
        _c(
            "predicted_intent_inherit_skill",
            Boolean,
            "Question: predicted intent's inherit_skill, as in this message.",
        ),
        _c("displayed_action_id", BigInteger, "Answer: action displayed (actions.displayed.id)."),
        _c("displayed_action_type", Text, "Answer: displayed action's action_type."),
        _c("displayed_action_language", Text, "Answer: displayed action's language."),
        _c(
            "displayed_action_transfer_to_human",
            Boolean,
            "Answer: displayed action transfers to a human.",
        ),
        _c(
            "came_from_action_id",
            BigInteger,
            "Answer: action the user came from (actions.came_from.id).",
        ),
        _c("came_from_action_type", Text, "Answer: came-from action's action_type."),
        _c("came_from_action_language", Text, "Answer: came-from action's language."),
        _c(
            "came_from_action_transfer_to_human",
            Boolean,
            "Answer: came-from action transfers to a human.",
        ),
        _c(
            "came_from_intent_id",
            BigInteger,
            "Answer: intent that led here (intents.came_from.id).",
        ),
        _c("came_from_intent_title", Text, "Answer: came-from intent's title."),
        _c(
            "came_from_intent_inherit_skill",
            Boolean,
            "Answer: came-from intent's inherit_skill, as in this message.",
        ),
        _c(
            "system_action_trigger",
            Text,
            'Answer: what triggered a system action, e.g. "welcome_action".',
        ),
        _c("human_agent", json_type(), "Answer: human agent object (shape undocumented)."),
        _c("matched_filter", json_type(), "Answer: the filter that matched."),
        _c("sent_filter_values", json_type(), "Filter values sent with the message."),
        _c(
            "clicked_button_id",
            BigInteger,
            "Button the user clicked to get here (button_clicked.id).",
        ),
        _c("clicked_button_type", Text, 'Clicked button\'s button_type ("action" or "url").'),
        _c("clicked_button_text", Text, "Clicked button's text."),
        _c("clicked_button_url", Text, "Clicked button's URL (url buttons)."),
        _c("clicked_button_hidden", Boolean, "Clicked button was hidden."),
        _c("clicked_button_source_url", Text, "URL of the page where the button was clicked."),
        _extra("message"),
        _ix("messages", "conversation_id"),
        _time_ix("messages", "time"),
        _sparse_ix("messages", "predicted_intent_id"),
        _sparse_ix("messages", "displayed_action_id"),
        _sparse_ix("messages", "clicked_button_id"),
        comment="One row per message (end-user question, bot/agent answer, other types).",
    )
    Table(
        "content",
        md,
        _pk("message_id", BigInteger, "The answer message (messages.id)."),
        _pk("position", Integer, "0-based position in the message's content list."),
        _conversation_id(),
        _c(
            "type",
            Text,
            'Content type: "text", "image", "video", "json", "link", "ssml" or another.',
        ),
        _c("time", UTCDateTime, "When the content item was produced, UTC."),
        _c("text", Text, "text: the HTML text."),
        _c("url", Text, "image/video: the media URL."),
        _c("video_type", Text, 'video: the host, e.g. "vimeo".'),
        _c("video_fullscreen", Boolean, "video: shown full screen."),
        _c("ssml", Text, "ssml: the speech markup."),
        _c("json", json_type(), "json: the JSON payload (any JSON value)."),
        _extra("content item"),
        _ix("content", "conversation_id"),
        _time_ix("content", "time"),
        comment="One row per item of an answer's content list, in order.",
    )
    Table(
        "buttons",
        md,
        _pk("message_id", BigInteger, "The answer message (messages.id)."),
        _pk("content_position", Integer, "Position of the link content item (content.position)."),
        _pk("position", Integer, "0-based position of the button in the link's button list."),
        _conversation_id(),
        _c("button_id", BigInteger, "The button definition's id (the same in many conversations)."),
        _c("button_type", Text, '"action" or "url".'),
        _c("text", Text, "Button text."),
        _c("url", Text, "Target URL (url buttons)."),
        _c("hidden", Boolean, "The button was hidden."),
        _c("attributes", json_type(), "Button attributes object."),
        _extra("button"),
        _ix("buttons", "conversation_id"),
        comment="One row per button shown inside a link content item.",
    )
    Table(
        "intent_analysis",
        md,
        _pk("message_id", BigInteger, "The question message (messages.id)."),
        _pk("position", Integer, "0-based position in question.analysis."),
        _conversation_id(),
        _c("processed", Text, "The sentence as processed."),
        _c("translated", Text, "The sentence as translated."),
        _c("winner", Boolean, "This sentence's intent won."),
        _c("intent_id", BigInteger, "Intent found for the sentence (intents.id)."),
        _c("intent_title", Text, "Its title."),
        _c("intent_inherit_skill", Boolean, "Its inherit_skill flag."),
        _extra("sentence analysis"),
        _ix("intent_analysis", "conversation_id"),
        comment="One row per sentence analysis of a question.",
    )
    Table(
        "intents",
        md,
        _pk("id", BigInteger, "Intent id."),
        _c("title", Text, "Title: the latest non-null value seen."),
        _c("inherit_skill", Boolean, "inherit_skill flag: the latest non-null value seen."),
        _c("last_seen_at", UTCDateTime, "Time of the latest message this intent was seen in, UTC."),
        _extra("intent"),
        *_seen_columns("title", "inherit_skill", "extra"),
        comment=(
            "Intent dimension, a convenience: per attribute, the latest non-null value seen. "
            "Each message keeps the values of its own reference."
        ),
    )
    Table(
        "actions",
        md,
        _pk("id", BigInteger, "Action id."),
        _c("action_type", Text, 'Action type, e.g. "content": the latest non-null value seen.'),
        _c("language", Text, "Language: the latest non-null value seen."),
        _c(
            "transfer_to_human",
            Boolean,
            "The action transfers to a human agent: the latest non-null value seen.",
        ),
        _c("last_seen_at", UTCDateTime, "Time of the latest message this action was seen in, UTC."),
        _extra("action"),
        *_seen_columns("action_type", "language", "transfer_to_human", "extra"),
        comment=(
            "Action dimension, a convenience: per attribute, the latest non-null value seen. "
            "Each message keeps the values of its own reference."
        ),
    )


def _add_pipeline_tables(md: MetaData) -> None:
    Table(
        "etl_state",
        md,
        Column(
            "state_key",
            Text,
            primary_key=True,
            comment="Digest of site + environment + filter set.",
        ),
        _c("site", Text, "The exporting site (host)."),
        _c("environment", Text, "Environment filter, if any."),
        _c("filters", json_type(), "The request filters this state is for."),
        _c(
            "watermark",
            UTCDateTime,
            "Everything before this instant is loaded, UTC.",
            nullable=False,
        ),
        _c("updated_at", UTCDateTime, "When the watermark last moved, UTC."),
        _c("last_run_id", Text, "Run that last moved the watermark."),
        comment="Incremental state: one watermark per site and filter set.",
    )
    Table(
        "etl_runs",
        md,
        Column("id", Integer, primary_key=True, autoincrement=True, comment="Row id."),
        _c(
            "run_id",
            Text,
            "One id per command invocation; a run has one row per window.",
            nullable=False,
        ),
        _c("state_key", Text, "etl_state.state_key the window belongs to."),
        _c("command", Text, "The CLI command that ran."),
        _c("window_start", UTCDateTime, "Window start (inclusive), UTC."),
        _c("window_end", UTCDateTime, "Window end (exclusive), UTC."),
        _c("started_at", UTCDateTime, "When the window started, UTC.", nullable=False),
        _c("finished_at", UTCDateTime, "When the window ended, UTC."),
        _c("attempts", Integer, "Export requests made for the window (1 = no retry)."),
        _c("conversations", Integer, "Conversations received."),
        _c("expected_conversations", Integer, "Conversations the API announced (query_info)."),
        _c("rows", json_type(), "Rows written per table."),
        _c("bytes", BigInteger, "Response bytes received."),
        _c("seconds", Double, "Wall-clock seconds for the window."),
        _c("outcome", Text, '"ok", "failed" or "interrupted".', nullable=False),
        _c("error", Text, "Error message when the window did not succeed."),
        _c("conversations_new", Integer, "Conversations not stored before, loaded."),
        _c("conversations_changed", Integer, "Stored conversations replaced by a changed copy."),
        _c("conversations_unchanged", Integer, "Conversations identical to the stored copy."),
        _c(
            "conversations_older",
            Integer,
            "Conversations not loaded: the stored copy is from a later (or a known) export.",
        ),
        _c("conversations_rejected", Integer, "Conversations put in etl_rejects (quarantine)."),
        _c("query_info", json_type(), "The export's query_info element, as sent."),
        _c("post_query_info", json_type(), "The export's post_query_info element, as sent."),
        _c(
            "unknown_elements",
            json_type(),
            "Top-level export elements of an unknown type, as sent (a list); NULL when none.",
        ),
        _c(
            "conversations_forgotten",
            Integer,
            "Conversations not loaded because `etl forget` erased them; for a forget, erased.",
        ),
        _c(
            "conversations_deleted",
            Integer,
            "Stored conversations the window's complete export no longer returned: marked or "
            "removed (pipeline.deletes).",
        ),
        _c("conversations_pruned", Integer, "Conversations removed by retention (`etl prune`)."),
        _ix("etl_runs", "state_key", "window_end"),
        _ix("etl_runs", "started_at"),
        comment="Run log: one row per window attempted.",
    )
    Table(
        "etl_rejects",
        md,
        Column("id", Integer, primary_key=True, autoincrement=True, comment="Row id."),
        _c(
            "body_hash",
            Text,
            "Digest of `body`: the same rejected text is kept once.",
            nullable=False,
            unique=True,
        ),
        _c("conversation_id", BigInteger, "The conversation's id, when it is a 64-bit integer."),
        _c("state_key", Text, 'etl_state.state_key of the window ("file" keys for files).'),
        _c("source", Text, "The window (start/end) or the file the conversation came from."),
        _c("window_start", UTCDateTime, "Window start (inclusive), UTC."),
        _c("window_end", UTCDateTime, "Window end (exclusive), UTC."),
        _c("position", Integer, "0-based position of the conversation in its export stream."),
        _c(
            "exported_at",
            UTCDateTime,
            "Export time of the copy (query_info.current_time); NULL when unknown.",
        ),
        _c("error", Text, "Why the conversation could not be loaded.", nullable=False),
        _c("body", Text, "The conversation as the server sent it (JSON text).", nullable=False),
        _c("run_id", Text, "Run that last rejected it.", nullable=False),
        _c("rejected_at", UTCDateTime, "When it was first rejected, UTC.", nullable=False),
        _c("last_tried_at", UTCDateTime, "When a load last failed on it, UTC.", nullable=False),
        _c(
            "attempts",
            Integer,
            "Loads that failed on it (windows and reprocess-rejects).",
            nullable=False,
        ),
        _ix("etl_rejects", "conversation_id"),
        comment="Quarantine: conversations that could not be loaded, kept whole until they can.",
    )


def _add_window_ledger(md: MetaData) -> None:
    Table(
        "etl_windows",
        md,
        Column("state_key", Text, primary_key=True, comment="etl_state.state_key of the window."),
        Column(
            "window_start",
            UTCDateTime,
            primary_key=True,
            comment="Window start (inclusive), UTC.",
        ),
        Column("window_end", UTCDateTime, primary_key=True, comment="Window end (exclusive), UTC."),
        _c(
            "state",
            Text,
            '"claimed" (a process is loading it), "loaded" or "failed" (its last load).',
            nullable=False,
        ),
        _c("claimed_by", Text, "The process holding the claim (host:pid:run), while claimed."),
        _c("heartbeat_at", UTCDateTime, "When the holder last said it is alive, UTC."),
        _c("attempts", Integer, "Export requests made for the window, over all its loads."),
        _c("run_id", Text, "Run that last claimed it."),
        _c(
            "committed_at",
            UTCDateTime,
            "When a load of it last committed, UTC; NULL: it never did (a hole).",
        ),
        _c("error", Text, "Why its last load failed."),
        _ix("etl_windows", "state_key", "window_end"),
        comment="Window ledger: which windows are claimed, loaded or failed, per state key.",
    )


def _add_settings(md: MetaData) -> None:
    Table(
        "etl_settings",
        md,
        Column("key", Text, primary_key=True, comment='The setting, e.g. "reporting.timezone".'),
        _c("value", Text, "The value the stored data was computed with.", nullable=False),
        _c("updated_at", UTCDateTime, "When the value last changed, UTC.", nullable=False),
        comment="Settings the stored data depends on, as they were when it was computed.",
    )


def _add_tombstones(md: MetaData) -> None:
    Table(
        "etl_tombstones",
        md,
        Column(
            "conversation_id",
            BigInteger,
            primary_key=True,
            autoincrement=False,
            comment="A conversation `etl forget` erased: no load brings it back.",
        ),
        _c("forgotten_at", UTCDateTime, "When it was erased, UTC.", nullable=False),
        _c("run_id", Text, "The `etl forget` run (etl_runs.run_id).", nullable=False),
        comment="Erased conversations: the id and when, nothing else (no personal data).",
    )


def _add_erased_keys(md: MetaData) -> None:
    Table(
        "etl_erased_keys",
        md,
        Column(
            "kind",
            Text,
            primary_key=True,
            comment='What the value was: "reference" or "authentication_identifier".',
        ),
        Column(
            "digest",
            Text,
            primary_key=True,
            comment="Keyed BLAKE2b hash of the value (key: etl_settings erasure.key), hex.",
        ),
        _c("forgotten_at", UTCDateTime, "When it was erased, UTC.", nullable=False),
        _c("run_id", Text, "The `etl forget` run (etl_runs.run_id).", nullable=False),
        comment=(
            "References and authentication identifiers `etl forget` erased, as keyed hashes "
            "(never the value): no load stores a conversation that has one."
        ),
    )


def table_of(metadata: MetaData, name: str) -> Table:
    """The table `name` of `metadata`, whose keys are "schema.name" when it has a schema."""
    return metadata.tables[f"{metadata.schema}.{name}" if metadata.schema else name]


def build_metadata(schema: str | None = None) -> MetaData:
    """All tables, optionally in a PostgreSQL schema (names qualified as "schema.table")."""
    md = MetaData(schema=schema, naming_convention=NAMING_CONVENTION)
    _add_data_tables(md)
    _add_pipeline_tables(md)
    _add_window_ledger(md)
    _add_settings(md)
    _add_tombstones(md)
    _add_erased_keys(md)
    return md
