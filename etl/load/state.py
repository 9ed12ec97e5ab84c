"""Pipeline state in the warehouse: the watermark per state key, and the run log."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import Connection, MetaData, Table, desc, func, select

from etl.load.engine import dialect_insert, take_turns
from etl.load.schema import table_of
from etl.normalize.clean import storable
from etl.secrets import scrub
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
    # Stored conversations the window found deleted at the source (None: not looked for), and
    # conversations a prune removed.
    deleted: int | None = None
    pruned: int | None = None

    @property
    def label(self) -> str:
        """What log lines call it: "window [start, end)" or "file PATH [start, end)"."""
        window = str(self.window) if self.window is not None else "(range unknown)"
        return f"file {self.file} {window}" if self.file else f"window {window}"


# Commands whose etl_runs rows are not windows. The view pipeline_daily spells the same list
# in its SQL (etl/load/views.py), frozen with the revision that created it: a command added
# here needs a new revision of the view too.
NOT_WINDOWS: Final = ("forget", "prune")


class StateStore:
    """Reads and writes `etl_state` and `etl_runs` on a connection the caller controls."""

    def __init__(self, metadata: MetaData) -> None:
        self.state: Table = table_of(metadata, "etl_state")
        self.runs: Table = table_of(metadata, "etl_runs")
        self.windows: Table = table_of(metadata, "etl_windows")

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
                self.state.insert().values(**self._state_row(key, site, filters, to, run_id))
            )
        elif to > current:
            conn.execute(
                self.state.update()
                .where(self.state.c.state_key == key)
                .values(watermark=to, updated_at=now, last_run_id=run_id)
            )

    def advance_over_loaded(
        self,
        conn: Connection,
        key: str,
        *,
        floor: datetime,
        site: str,
        filters: Mapping[str, Any],
        run_id: str,
    ) -> datetime | None:
        """Move the watermark to the end of the contiguous run of committed windows
        (etl_windows) that starts at it, or at `floor` when there is no watermark yet; return
        where it is. Windows committed out of order leave it where the first hole is.

        Two windows committing at once take turns here, to the commit, and the second sees
        the first's ledger row, so the watermark never stops short of a window that committed.
        The state row's lock is not enough for that: before the first window of a state key
        commits there is no row to lock, and the second would not see the first's ledger row.
        """
        take_turns(conn, f"etl_state {key}")
        for _ in range(2):
            current = _aware(
                conn.execute(
                    select(self.state.c.watermark)
                    .where(self.state.c.state_key == key)
                    .with_for_update()
                ).scalar()
            )
            start = current or floor
            end = self._loaded_through(conn, key, start)
            if end <= start:
                return current
            if current is not None:
                self.advance(conn, key, site=site, filters=filters, to=end, run_id=run_id)
                return end
            row = self._state_row(key, site, filters, end, run_id)
            insert = dialect_insert(conn, self.state).values(**row)
            created = insert.on_conflict_do_nothing().returning(self.state.c.state_key)
            if conn.execute(created).first() is not None:
                return end
        raise AssertionError("etl_state row neither found nor created")  # pragma: no cover

    def _loaded_through(self, conn: Connection, key: str, start: datetime) -> datetime:
        windows = self.windows
        while True:
            end = conn.execute(
                select(func.max(windows.c.window_end)).where(
                    windows.c.state_key == key,
                    windows.c.committed_at.is_not(None),
                    windows.c.window_start <= start,
                    windows.c.window_end > start,
                )
            ).scalar()
            if end is None:
                return start
            start = end  # an aware UTC datetime, as UTCDateTime reads it

    def ledger_keys(self, conn: Connection) -> list[str]:
        """The state keys of the window ledger (etl_windows): those of etl_state, and any whose
        first window has not loaded yet, which has no etl_state row until it does."""
        query = select(self.windows.c.state_key).distinct().order_by(self.windows.c.state_key)
        return list(conn.execute(query).scalars())

    def holes(self, conn: Connection, key: str, after: datetime | None) -> list[dict[str, Any]]:
        """The windows after the watermark `after`, in order: loaded ones (past a hole),
        failed and claimed ones: what keeps the watermark where it is."""
        windows = self.windows
        query = select(windows).where(windows.c.state_key == key)
        if after is not None:
            query = query.where(windows.c.window_end > after)
        rows = conn.execute(query.order_by(windows.c.window_start)).mappings()
        return [dict(r) for r in rows]

    @staticmethod
    def _state_row(
        key: str, site: str, filters: Mapping[str, Any], watermark: datetime, run_id: str
    ) -> dict[str, Any]:
        environment = filters.get("environment")
        return {
            "state_key": key,
            "site": site,
            "environment": str(environment) if environment else None,
            "filters": dict(filters),
            "watermark": watermark,
            "updated_at": datetime.now(UTC),
            "last_run_id": run_id,
        }

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
                error=None if report.error is None else scrub(report.error),
                **{
                    f"conversations_{name}": count
                    for name, count in report.conversation_outcomes.items()
                },
                conversations_deleted=report.deleted,
                conversations_pruned=report.pruned,
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

    def run_totals(self, conn: Connection) -> list[dict[str, Any]]:
        """The run log summed per state key and outcome: windows, conversations, what was done
        with them (the `conversations_*` columns), the furthest window end, the last finish."""
        runs = self.runs
        sums = [
            func.coalesce(func.sum(column), 0).label(column.name)
            for column in runs.c
            if column.name.startswith("conversations")
        ]
        query = select(
            runs.c.state_key,
            runs.c.outcome,
            func.count().label("windows"),
            *sums,
            func.max(runs.c.window_end).label("last_window_end"),
            func.max(runs.c.finished_at).label("last_finished_at"),
        )
        query = query.where(runs.c.command.not_in(NOT_WINDOWS))
        query = query.group_by(runs.c.state_key, runs.c.outcome)
        return [dict(r) for r in conn.execute(query).mappings()]

    def personal_data_totals(self, conn: Connection) -> dict[str, int]:
        """Conversations erased by `etl forget`, found deleted at the source, and pruned."""
        runs = self.runs
        ok = runs.c.outcome == "ok"
        query = select(
            func.coalesce(
                func.sum(runs.c.conversations_forgotten).filter(ok, runs.c.command == "forget"), 0
            ),
            func.coalesce(func.sum(runs.c.conversations_deleted).filter(ok), 0),
            # A prune that failed part-way still removed the batches it committed.
            func.coalesce(func.sum(runs.c.conversations_pruned), 0),
        )
        forgotten, deleted, pruned = conn.execute(query).one()
        return {"forgotten": int(forgotten), "deleted": int(deleted), "pruned": int(pruned)}


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
