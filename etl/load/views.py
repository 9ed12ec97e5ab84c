"""The metric views: their SQL on each warehouse, and what each column means.

The views define the dashboard numbers once (docs/metrics.md, whose SQL a test compares with
`view_sql`). They return the same rows on PostgreSQL and SQLite: two expressions differ in
spelling (a duration, a UTC date), and every count is cast to BIGINT so that PostgreSQL's SUM
does not turn it into a numeric.

Migrations create the views from here (revisions 0005, 0006 and 0007). What `view_sql` returns for
a revision must never change: a new definition is a new migration that recreates the views,
and a parameter here that the older revisions pass to keep theirs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

# Seconds from `start` to `end`, exact to the microsecond on both warehouses. SQLite stores
# UTC text "YYYY-MM-DD HH:MM:SS.ffffff": whole seconds from strftime of the text cut before
# its fraction (strftime rounds a fraction to milliseconds, so ".999577" counted as the next
# second: durations one second off), microseconds from the text, so that the one division
# rounds like PostgreSQL's cast of an exact numeric.
_DURATION: Final = {
    "postgresql": "CAST(EXTRACT(EPOCH FROM ({end} - {start})) AS DOUBLE PRECISION)",
    "sqlite": (
        "((CAST(strftime('%s', substr({end}, 1, 19)) AS INTEGER)"
        " - CAST(strftime('%s', substr({start}, 1, 19)) AS INTEGER))"
        " * 1000000 + CAST(substr({end}, 21, 6) AS INTEGER)"
        " - CAST(substr({start}, 21, 6) AS INTEGER)) / 1000000.0"
    ),
}
# As revisions 0005 and 0006 created conversation_facts (view_sql's `exact_seconds` False).
_DURATION_BEFORE_0007: Final = {
    "postgresql": _DURATION["postgresql"],
    "sqlite": (
        "((CAST(strftime('%s', {end}) AS INTEGER) - CAST(strftime('%s', {start}) AS INTEGER))"
        " * 1000000 + CAST(substr({end}, 21, 6) AS INTEGER)"
        " - CAST(substr({start}, 21, 6) AS INTEGER)) / 1000000.0"
    ),
}
# The UTC date of a timestamp.
_UTC_DATE: Final = {
    "postgresql": "CAST(({at} AT TIME ZONE 'UTC') AS DATE)",
    "sqlite": "date({at})",
}

# A message that hands the conversation over to a human agent.
_HANDOVER = "m.is_human_chat OR m.displayed_action_transfer_to_human"
_QUESTIONS = "COALESCE(SUM(CASE WHEN m.type = 'question' THEN 1 ELSE 0 END), 0)"
_HANDED_OVER = f"COALESCE(MAX(CASE WHEN {_HANDOVER} THEN 1 ELSE 0 END), 0)"


def _conversation_facts(
    t: Callable[[str], str], dialect: str, *, exact_seconds: bool = True
) -> str:
    durations = _DURATION if exact_seconds else _DURATION_BEFORE_0007
    duration = durations[dialect].format(start="c.created_at", end="c.last_message_at")
    return f"""SELECT
    c.id AS conversation_id,
    c.environment,
    c.created_at AS started_at,
    c.local_date,
    c.local_hour,
    COUNT(m.id) AS messages,
    {_QUESTIONS} AS questions,
    COALESCE(SUM(CASE WHEN m.type = 'answer' THEN 1 ELSE 0 END), 0) AS answers,
    CAST({_HANDED_OVER} AS BOOLEAN) AS handed_over,
    CAST(CASE WHEN {_QUESTIONS} > 0 AND {_HANDED_OVER} = 0 THEN 1 ELSE 0 END AS BOOLEAN)
        AS contained,
    COALESCE(SUM(CASE WHEN m.type = 'question' AND m.predicted_intent_id IS NULL
        THEN 1 ELSE 0 END), 0) AS not_understood_questions,
    (SELECT COUNT(*) FROM {t("buttons")} b WHERE b.conversation_id = c.id) AS buttons_shown,
    COALESCE(SUM(CASE WHEN m.clicked_button_id IS NOT NULL THEN 1 ELSE 0 END), 0)
        AS buttons_clicked,
    {duration} AS duration_seconds,
    c.quality_label,
    c.reviewed
FROM {t("conversations")} c
LEFT JOIN {t("messages")} m ON m.conversation_id = c.id
GROUP BY c.id, c.environment, c.created_at, c.last_message_at, c.local_date, c.local_hour,
    c.quality_label, c.reviewed"""


def _daily_metrics(t: Callable[[str], str], dialect: str) -> str:
    engaged = "SUM(CASE WHEN f.questions > 0 THEN 1 ELSE 0 END)"
    contained = "SUM(CASE WHEN f.contained THEN 1 ELSE 0 END)"
    handed_over = "SUM(CASE WHEN f.handed_over THEN 1 ELSE 0 END)"
    return f"""SELECT
    f.local_date,
    f.environment,
    COUNT(*) AS conversations,
    CAST({engaged} AS BIGINT) AS engaged_conversations,
    CAST({contained} AS BIGINT) AS contained_conversations,
    CAST({handed_over} AS BIGINT) AS handed_over_conversations,
    CAST(SUM(f.messages) AS BIGINT) AS messages,
    CAST(SUM(f.questions) AS BIGINT) AS questions,
    CAST(SUM(f.not_understood_questions) AS BIGINT) AS not_understood_questions,
    CAST({contained} AS DOUBLE PRECISION) / NULLIF({engaged}, 0) AS containment_rate,
    CAST({handed_over} AS DOUBLE PRECISION) / COUNT(*) AS handover_rate,
    CAST(SUM(f.not_understood_questions) AS DOUBLE PRECISION) / NULLIF(SUM(f.questions), 0)
        AS not_understood_rate,
    CAST(SUM(f.messages) AS DOUBLE PRECISION) / COUNT(*) AS avg_messages,
    AVG(f.duration_seconds) AS avg_duration_seconds
FROM {t("conversation_facts")} f
GROUP BY f.local_date, f.environment"""


def _intent_daily(t: Callable[[str], str], dialect: str) -> str:
    return f"""SELECT
    q.local_date,
    q.environment,
    q.intent_id,
    MAX(q.latest_title) AS intent_title,
    COUNT(*) AS questions
FROM (
    SELECT
        c.local_date,
        c.environment,
        m.predicted_intent_id AS intent_id,
        FIRST_VALUE(m.predicted_intent_title) OVER (
            PARTITION BY c.local_date, c.environment, m.predicted_intent_id
            ORDER BY CASE WHEN m.predicted_intent_title IS NULL THEN 1 ELSE 0 END,
                m.time DESC NULLS LAST, m.id DESC
        ) AS latest_title
    FROM {t("messages")} m
    JOIN {t("conversations")} c ON c.id = m.conversation_id
    WHERE m.type = 'question' AND m.predicted_intent_id IS NOT NULL
) q
GROUP BY q.local_date, q.environment, q.intent_id"""


def _button_daily(t: Callable[[str], str], dialect: str) -> str:
    return f"""SELECT
    e.local_date,
    e.environment,
    e.button_id,
    CAST(SUM(e.shown) AS BIGINT) AS shown,
    CAST(SUM(e.clicked) AS BIGINT) AS clicked
FROM (
    SELECT c.local_date, c.environment, b.button_id, 1 AS shown, 0 AS clicked
    FROM {t("buttons")} b
    JOIN {t("conversations")} c ON c.id = b.conversation_id
    WHERE b.button_id IS NOT NULL
    UNION ALL
    SELECT c.local_date, c.environment, m.clicked_button_id, 0, 1
    FROM {t("messages")} m
    JOIN {t("conversations")} c ON c.id = m.conversation_id
    WHERE m.clicked_button_id IS NOT NULL
) e
GROUP BY e.local_date, e.environment, e.button_id"""


def _button_metrics(t: Callable[[str], str], dialect: str) -> str:
    # The latest text is looked up per button among the conversations of the last day it was
    # seen (through the local_date index), not by sorting every button row of all time.
    return f"""SELECT
    s.button_id,
    (
        SELECT v.text
        FROM (
            SELECT b.text, c.created_at AS started_at, b.message_id,
                b.content_position * 1000000 + b.position AS place
            FROM {t("conversations")} c
            JOIN {t("buttons")} b ON b.conversation_id = c.id
            WHERE c.local_date = s.last_date AND b.button_id = s.button_id
                AND b.text IS NOT NULL
            UNION ALL
            SELECT m.clicked_button_text, c.created_at, m.id, -1
            FROM {t("conversations")} c
            JOIN {t("messages")} m ON m.conversation_id = c.id
            WHERE c.local_date = s.last_date AND m.clicked_button_id = s.button_id
                AND m.clicked_button_text IS NOT NULL
        ) v
        ORDER BY v.started_at DESC NULLS LAST, v.message_id DESC, v.place DESC
        LIMIT 1
    ) AS button_text,
    s.shown,
    s.clicked,
    CAST(s.clicked AS DOUBLE PRECISION) / NULLIF(s.shown, 0) AS click_through_rate
FROM (
    SELECT button_id, CAST(SUM(shown) AS BIGINT) AS shown,
        CAST(SUM(clicked) AS BIGINT) AS clicked, MAX(local_date) AS last_date
    FROM {t("button_daily")}
    GROUP BY button_id
) s"""


def _pipeline_daily(t: Callable[[str], str], dialect: str) -> str:
    day = _UTC_DATE[dialect].format(at="r.started_at")
    return f"""SELECT
    {day} AS load_date,
    COUNT(*) AS windows,
    CAST(SUM(CASE WHEN r.outcome = 'failed' THEN 1 ELSE 0 END) AS BIGINT) AS failed_windows,
    CAST(SUM(CASE WHEN r.outcome = 'interrupted' THEN 1 ELSE 0 END) AS BIGINT)
        AS interrupted_windows,
    CAST(COALESCE(SUM(CASE WHEN r.outcome = 'ok' THEN r.conversations END), 0) AS BIGINT)
        AS conversations,
    SUM(r.seconds) AS seconds
FROM {t("etl_runs")} r
GROUP BY {day}"""


# In creation order: a view comes after the views it reads.
VIEWS: Final[dict[str, Callable[[Callable[[str], str], str], str]]] = {
    "conversation_facts": _conversation_facts,
    "daily_metrics": _daily_metrics,
    "intent_daily": _intent_daily,
    "button_daily": _button_daily,
    "button_metrics": _button_metrics,
    "pipeline_daily": _pipeline_daily,
}


# What each view and its columns mean, as PostgreSQL comments (BI tools show them); the
# definitions in full are in docs/metrics.md.
VIEW_COMMENTS: Final = {
    "conversation_facts": "One row per conversation, with its counts and flags (docs/metrics.md).",
    "daily_metrics": "Per local day (reporting.timezone) and environment: volume and rates.",
    "intent_daily": "Per local day, environment and predicted intent: questions.",
    "button_daily": "Per local day, environment and button: times shown and clicked.",
    "button_metrics": "Per button, over all time: shown, clicked, click-through rate.",
    "pipeline_daily": "Per UTC day of loading: windows, failures, conversations, seconds.",
}
COLUMN_COMMENTS: Final = {
    "conversation_facts": {
        "conversation_id": "The conversation (conversations.id).",
        "environment": 'Environment it ran in, e.g. "live".',
        "started_at": "When it started (time.created), UTC.",
        "local_date": "Day it started in the reporting time zone.",
        "local_hour": "Hour (0-23) it started in the reporting time zone.",
        "messages": "Messages stored for it.",
        "questions": 'End-user questions (type "question").',
        "answers": 'Bot or agent answers (type "answer").',
        "handed_over": "A message was a human-agent chat, or displayed a transfer-to-human action.",
        "contained": "At least one question and not handed over.",
        "not_understood_questions": "Questions with no predicted intent.",
        "buttons_shown": "Buttons shown in its answers.",
        "buttons_clicked": "Messages reached by clicking a button.",
        "duration_seconds": "Seconds from its start to its last message.",
        "quality_label": "Quality label (last session's).",
        "reviewed": "Any session of it was reviewed.",
    },
    "daily_metrics": {
        "local_date": "Day in the reporting time zone (the conversations' start).",
        "environment": "Environment.",
        "conversations": "Conversations that started that day.",
        "engaged_conversations": "Of those, conversations with at least one question.",
        "contained_conversations": "Of those, conversations contained (not handed over).",
        "handed_over_conversations": "Conversations handed over to a human.",
        "messages": "Messages of those conversations.",
        "questions": "Questions of those conversations.",
        "not_understood_questions": "Questions with no predicted intent.",
        "containment_rate": "contained / engaged conversations; NULL without engaged ones.",
        "handover_rate": "handed over / conversations.",
        "not_understood_rate": "not understood / questions; NULL without questions.",
        "avg_messages": "messages / conversations.",
        "avg_duration_seconds": "Mean of conversation_facts.duration_seconds.",
    },
    "intent_daily": {
        "local_date": "Day the conversations started, in the reporting time zone.",
        "environment": "Environment.",
        "intent_id": "Predicted intent of the questions.",
        "intent_title": "Its title on the latest of those questions that had one.",
        "questions": "Questions predicted as this intent.",
    },
    "button_daily": {
        "local_date": "Day the conversations started, in the reporting time zone.",
        "environment": "Environment.",
        "button_id": "The button (buttons.button_id).",
        "shown": "Times it was shown.",
        "clicked": "Times it was clicked (messages.clicked_button_id).",
    },
    "button_metrics": {
        "button_id": "The button (buttons.button_id).",
        "button_text": "Its text in the conversation that started last (shown or clicked).",
        "shown": "Times it was shown.",
        "clicked": "Times it was clicked.",
        "click_through_rate": "clicked / shown; NULL when never shown.",
    },
    "pipeline_daily": {
        "load_date": "UTC day the windows started loading.",
        "windows": "Windows attempted (etl_runs rows).",
        "failed_windows": "Of those, failed.",
        "interrupted_windows": "Of those, interrupted (Ctrl-C, SIGTERM).",
        "conversations": "Conversations received by the windows that loaded.",
        "seconds": "Seconds spent in all of them, failed and interrupted ones included.",
    },
}


# Revision 0006 (personal data): soft-deleted conversations (conversations.deleted_at) count
# nowhere, and the run log rows of `etl forget` and `etl prune` are not windows.
_PERSONAL_DATA_ROWS: Final = {
    "conversations": "deleted_at IS NULL",
    "etl_runs": "command NOT IN ('forget', 'prune')",
}


def view_sql(
    name: str,
    dialect: str,
    schema: str | None = None,
    *,
    personal_data: bool = True,
    exact_seconds: bool = True,
) -> str:
    """The SELECT behind view `name` on `dialect` ("postgresql", "sqlite"); with
    `personal_data` False, as revision 0005 created it (before deleted_at existed); with
    `exact_seconds` False, as revisions 0005 and 0006 did (SQLite durations could be a second
    off, see _DURATION)."""

    def qualified(table: str) -> str:
        target = f"{quoted(schema)}.{table}" if schema else table
        where = _PERSONAL_DATA_ROWS.get(table) if personal_data else None
        return f"(SELECT * FROM {target} WHERE {where})" if where else target

    if name == "conversation_facts":  # the one view revision 0007 changed
        return _conversation_facts(qualified, dialect, exact_seconds=exact_seconds)
    return VIEWS[name](qualified, dialect)


def create_views(
    dialect: str, schema: str | None, *, personal_data: bool, exact_seconds: bool
) -> list[str]:
    """The statements that create every view, with their comments on PostgreSQL."""
    prefix = f"{quoted(schema)}." if schema else ""
    statements = []
    for name in VIEWS:
        sql = view_sql(
            name, dialect, schema, personal_data=personal_data, exact_seconds=exact_seconds
        )
        statements.append(f"CREATE VIEW {prefix}{name} AS\n{sql}")
        if dialect == "postgresql":
            statements.append(f"COMMENT ON VIEW {prefix}{name} IS {_literal(VIEW_COMMENTS[name])}")
            statements.extend(
                f"COMMENT ON COLUMN {prefix}{name}.{column} IS {_literal(comment)}"
                for column, comment in COLUMN_COMMENTS[name].items()
            )
    return statements


def drop_views(schema: str | None) -> list[str]:
    """The statements that drop every view, readers first."""
    prefix = f"{quoted(schema)}." if schema else ""
    return [f"DROP VIEW {prefix}{name}" for name in reversed(VIEWS)]


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def quoted(schema: str) -> str:
    """A schema name as an SQL identifier."""
    return '"' + schema.replace('"', '""') + '"'
