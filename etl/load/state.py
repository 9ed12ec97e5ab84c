"""Pipeline state in the warehouse: the watermark per state key, and the run log."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, MetaData, Table, desc, func, select

from etl.load.schema import table_of
from etl.normalize.clean import storable
from etl.windows import Window


def state_key(site: str, filters: Mapping[str, Any]) -> str:
    """A digest of the site and the filter set: differently filtered pipelines keep apart."""
    canonical = json.dumps(
        {"site": site.rstrip("/"), "filters": dict(filters)}, sort_keys=True, default=str
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


@dataclass
class WindowReport:
    """What one window did; becomes a row of `etl_runs`."""

    run_id: str
    state_key: str
    command: str
    window: Window | None  # None: a saved file whose range is missing or not usable
    started_at: datetime
    attempts: int = 0
    conversations: int = 0
    expected_conversations: int | None = None
    rows: dict[str, int] = field(default_factory=dict)
    bytes: int = 0
    seconds: float = 0.0
    outcome: str = "ok"
    error: str | None = None
    # What the window did with each conversation: etl.load.loader.OUTCOMES -> count.
    conversation_outcomes: dict[str, int] = field(default_factory=dict)
    query_info: dict[str, Any] | None = None
    post_query_info: dict[str, Any] | None = None
    unknown_elements: list[Any] = field(default_factory=list)
    # False for a saved file without query_info.current_time (see etl.load.loader.outcome).
    export_time_known: bool = True
    file: str | None = None  # the saved export file, for `etl load-file`

    @property
    def label(self) -> str:
        """What log lines call it: "window [start, end)" or "file PATH [start, end)"."""
        window = str(self.window) if self.window is not None else "(range unknown)"
        return f"file {self.file} {window}" if self.file else f"window {window}"


class StateStore:
    """Reads and writes `etl_state` and `etl_runs` on a connection the caller controls."""

    def __init__(self, metadata: MetaData) -> None:
        self.state: Table = table_of(metadata, "etl_state")
        self.runs: Table = table_of(metadata, "etl_runs")

    def watermark(self, conn: Connection, key: str) -> datetime | None:
        value = conn.execute(
            select(self.state.c.watermark).where(self.state.c.state_key == key)
        ).scalar()
        return _aware(value)

    def advance(
        self,
        conn: Connection,
        key: str,
        *,
        site: str,
        filters: Mapping[str, Any],
        to: datetime,
        run_id: str,
    ) -> None:
        """Move the watermark to `to` unless it already is past it (never backwards)."""
        current = self.watermark(conn, key)
        now = datetime.now(UTC)
        if current is None:
            conn.execute(
                self.state.insert().values(
                    state_key=key,
                    site=site,
                    environment=str(filters.get("environment"))
                    if filters.get("environment")
                    else None,
                    filters=dict(filters),
                    watermark=to,
                    updated_at=now,
                    last_run_id=run_id,
                )
            )
        elif to > current:
            conn.execute(
                self.state.update()
                .where(self.state.c.state_key == key)
                .values(watermark=to, updated_at=now, last_run_id=run_id)
            )

    def log_window(self, conn: Connection, report: WindowReport) -> None:
        conn.execute(
            self.runs.insert().values(
                run_id=report.run_id,
                state_key=report.state_key,
                command=report.command,
                window_start=report.window.start if report.window else None,
                window_end=report.window.end if report.window else None,
                started_at=report.started_at,
                finished_at=datetime.now(UTC),
                attempts=report.attempts,
                conversations=report.conversations,
                expected_conversations=report.expected_conversations,
                rows=report.rows,
                bytes=report.bytes,
                seconds=round(report.seconds, 3),
                outcome=report.outcome,
                error=report.error,
                **{
                    f"conversations_{name}": count
                    for name, count in report.conversation_outcomes.items()
                },
                # As the export sent them, but storable on both databases (see `storable`).
                query_info=storable(report.query_info),
                post_query_info=storable(report.post_query_info),
                unknown_elements=storable(report.unknown_elements or None),
            )
        )

    def committed(self, conn: Connection, run_id: str, window: Window) -> bool:
        """Whether this run committed `window` (its ok row commits in the window's transaction)."""
        query = (
            select(self.runs.c.id)
            .where(
                self.runs.c.run_id == run_id,
                self.runs.c.window_start == window.start,
                self.runs.c.window_end == window.end,
                self.runs.c.outcome == "ok",
            )
            .limit(1)
        )
        return conn.execute(query).first() is not None

    def states(self, conn: Connection) -> list[dict[str, Any]]:
        rows = conn.execute(select(self.state).order_by(self.state.c.site)).mappings()
        return [dict(r) | {"watermark": _aware(r["watermark"])} for r in rows]

    def recent_runs(self, conn: Connection, limit: int = 10) -> list[dict[str, Any]]:
        query = select(self.runs).order_by(desc(self.runs.c.id)).limit(limit)
        return [dict(r) for r in conn.execute(query).mappings()]

    def count(self, conn: Connection, table: Table) -> int:
        return int(conn.execute(select(func.count()).select_from(table)).scalar() or 0)


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
