"""Read a report's figures from the warehouse's metric views (the only module that queries).

The views (migration 0005) give the same results on SQLite and PostgreSQL; what differs is
only how values come back (dates as text on SQLite, sums as Decimal on PostgreSQL), which the
column types and the int()/float() conversions below even out.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, tzinfo
from typing import Any, Final

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Date,
    Double,
    Integer,
    Select,
    TableClause,
    Text,
    column,
    func,
    or_,
    select,
    table,
)

from etl.load.localtime import refuse_other_zone, stored_zone
from etl.load.revision import current_revision, refuse_other_revision
from etl.load.schema import build_metadata, table_of
from etl.report.model import (
    ButtonCount,
    DayCounts,
    IntentCount,
    LoadDay,
    ReportData,
    Watermark,
    dates,
)

TOP_INTENTS: Final = 10
TOP_BUTTONS: Final = 10
LOAD_DAYS: Final = 14  # the most recent UTC dates with pipeline runs


def check_warehouse(conn: Connection, schema: str | None, zone: tzinfo, where: str) -> None:
    """Refuse a warehouse without the views, or whose local dates are for another zone
    than the configured reporting zone (the report would put days under the wrong dates)."""
    refuse_other_revision(current_revision(conn.engine, schema), where)
    refuse_other_zone(stored_zone(conn, build_metadata(schema)), zone, where)


def read_report(
    conn: Connection,
    *,
    schema: str | None,
    start: date,
    end: date,
    environment: str | None,
    timezone: str,
    warehouse: str,
    now: datetime,
) -> ReportData:
    """The report's figures for local dates [start, end), one environment or all."""
    views = _Views(schema)
    intents, intent_questions, intent_count = _intents(conn, views, start, end, environment)
    buttons, button_totals, button_count = _buttons(conn, views, start, end, environment)
    return ReportData(
        start=start,
        end=end,
        timezone=timezone,
        warehouse=warehouse,
        generated_at=now,
        environment=environment,
        days=_days(conn, views, start, end, environment),
        avg_duration_seconds=_avg_duration(conn, views, start, end, environment),
        intents=intents,
        intent_questions=intent_questions,
        intent_count=intent_count,
        buttons=buttons,
        button_totals=button_totals,
        button_count=button_count,
        load_days=_load_days(conn, views),
        watermarks=_watermarks(conn, schema, environment, now),
    )


class _Views:
    """The views, as lightweight table clauses in the warehouse's schema (if any)."""

    def __init__(self, schema: str | None) -> None:
        def view(name: str, *columns: tuple[str, Any]) -> TableClause:
            return table(name, *(column(n, t) for n, t in columns), schema=schema)

        scope = (("local_date", Date), ("environment", Text))
        self.conversation_facts = view("conversation_facts", *scope, ("duration_seconds", Double))
        self.daily_metrics = view(
            "daily_metrics",
            *scope,
            *((name, Integer) for name in _DAILY_COUNTS.values()),
        )
        self.intent_daily = view(
            "intent_daily",
            *scope,
            ("intent_id", BigInteger),
            ("intent_title", Text),
            ("questions", Integer),
        )
        self.button_daily = view(
            "button_daily",
            *scope,
            ("button_id", BigInteger),
            ("shown", Integer),
            ("clicked", Integer),
        )
        self.button_metrics = view(
            "button_metrics", ("button_id", BigInteger), ("button_text", Text)
        )
        self.pipeline_daily = view(
            "pipeline_daily",
            ("load_date", Date),
            ("windows", Integer),
            ("failed_windows", Integer),
            ("conversations", Integer),
            ("seconds", Double),
        )


# DayCounts field -> daily_metrics column.
_DAILY_COUNTS: Final = {
    "conversations": "conversations",
    "engaged": "engaged_conversations",
    "contained": "contained_conversations",
    "handed_over": "handed_over_conversations",
    "messages": "messages",
    "questions": "questions",
    "not_understood": "not_understood_questions",
}


def _in_range(
    stmt: Select[Any], view: TableClause, start: date, end: date, environment: str | None
) -> Select[Any]:
    stmt = stmt.where(view.c.local_date >= start, view.c.local_date < end)
    return stmt.where(view.c.environment == environment) if environment is not None else stmt


def _sum(element: ColumnElement[Any], name: str) -> ColumnElement[Any]:
    return func.coalesce(func.sum(element), 0).label(name)


def _days(
    conn: Connection, views: _Views, start: date, end: date, environment: str | None
) -> list[DayCounts]:
    dm = views.daily_metrics
    stmt = select(
        dm.c.local_date, *(_sum(dm.c[col], field) for field, col in _DAILY_COUNTS.items())
    ).group_by(dm.c.local_date)
    found: dict[date, DayCounts] = {}
    for row in conn.execute(_in_range(stmt, dm, start, end, environment)).mappings():
        counts = {field: int(row[field]) for field in _DAILY_COUNTS}
        found[row["local_date"]] = DayCounts(row["local_date"], **counts)
    return [found.get(day) or DayCounts(day) for day in dates(start, end)]


def _avg_duration(
    conn: Connection, views: _Views, start: date, end: date, environment: str | None
) -> float | None:
    facts = views.conversation_facts
    stmt = select(func.avg(facts.c.duration_seconds))
    value = conn.execute(_in_range(stmt, facts, start, end, environment)).scalar()
    return None if value is None else float(value)


def _intents(
    conn: Connection, views: _Views, start: date, end: date, environment: str | None
) -> tuple[list[IntentCount], int, int]:
    """The most asked intents, all questions with an intent row, and how many intents."""
    view = views.intent_daily
    stmt = select(
        view.c.intent_id,
        view.c.intent_title,
        _sum(view.c.questions, "questions"),
        func.max(view.c.local_date).label("last_date"),
    ).group_by(view.c.intent_id, view.c.intent_title)
    questions: dict[int | None, int] = {}
    # The title of the latest date that has one: a day whose references carried no title does
    # not blank the title another day gave (as the intents table keeps it). Ranked by (has a
    # title, date); the later row wins a tie.
    titles: dict[int | None, tuple[tuple[bool, date], str | None]] = {}
    for row in conn.execute(_in_range(stmt, view, start, end, environment)):
        key = None if row.intent_id is None else int(row.intent_id)
        questions[key] = questions.get(key, 0) + int(row.questions)
        rank = (row.intent_title is not None, row.last_date)
        if key not in titles or rank >= titles[key][0]:
            titles[key] = (rank, row.intent_title)
    ranked = sorted(
        (IntentCount(key, titles[key][1], count) for key, count in questions.items() if count),
        key=lambda i: (-i.questions, i.title or "", i.intent_id or 0),
    )
    return ranked[:TOP_INTENTS], sum(i.questions for i in ranked), len(ranked)


def _buttons(
    conn: Connection, views: _Views, start: date, end: date, environment: str | None
) -> tuple[list[ButtonCount], ButtonCount, int]:
    """The most shown buttons with their latest text, the totals, and how many buttons."""
    view = views.button_daily
    stmt = select(
        view.c.button_id, _sum(view.c.shown, "shown"), _sum(view.c.clicked, "clicked")
    ).group_by(view.c.button_id)
    counts = [
        (None if r.button_id is None else int(r.button_id), int(r.shown), int(r.clicked))
        for r in conn.execute(_in_range(stmt, view, start, end, environment))
    ]
    counts = [c for c in counts if c[1] or c[2]]
    counts.sort(key=lambda c: (-c[1], -c[2], c[0] or 0))
    top = counts[:TOP_BUTTONS]
    texts = _button_texts(conn, views, [c[0] for c in top if c[0] is not None])
    totals = ButtonCount(None, None, sum(c[1] for c in counts), sum(c[2] for c in counts))
    return [ButtonCount(i, texts.get(i), s, c) for i, s, c in top], totals, len(counts)


def _button_texts(conn: Connection, views: _Views, ids: Iterable[int]) -> dict[int | None, str]:
    metrics = views.button_metrics
    wanted = list(ids)
    if not wanted:
        return {}
    stmt = select(metrics.c.button_id, metrics.c.button_text).where(metrics.c.button_id.in_(wanted))
    return {int(r.button_id): r.button_text for r in conn.execute(stmt) if r.button_text}


def _load_days(conn: Connection, views: _Views) -> list[LoadDay]:
    view = views.pipeline_daily
    stmt = (
        select(
            view.c.load_date,
            _sum(view.c.windows, "windows"),
            _sum(view.c.failed_windows, "failed_windows"),
            _sum(view.c.conversations, "conversations"),
            _sum(view.c.seconds, "seconds"),
        )
        .group_by(view.c.load_date)
        .order_by(view.c.load_date.desc())
        .limit(LOAD_DAYS)
    )
    days = [
        LoadDay(
            r.load_date,
            windows=int(r.windows),
            failed_windows=int(r.failed_windows),
            conversations=int(r.conversations),
            seconds=float(r.seconds),
        )
        for r in conn.execute(stmt)
    ]
    return days[::-1]


def _watermarks(
    conn: Connection, schema: str | None, environment: str | None, now: datetime
) -> list[Watermark]:
    """Each state's watermark and lag; with an environment, the states that cover it (a
    state without an environment filter loads them all)."""
    state = table_of(build_metadata(schema), "etl_state")
    stmt = select(state.c.state_key, state.c.site, state.c.environment, state.c.watermark)
    if environment is not None:
        stmt = stmt.where(or_(state.c.environment == environment, state.c.environment.is_(None)))
    return [
        Watermark(r.state_key, r.site, r.environment, r.watermark, now - r.watermark)
        for r in conn.execute(stmt.order_by(state.c.site, state.c.environment, state.c.state_key))
    ]
