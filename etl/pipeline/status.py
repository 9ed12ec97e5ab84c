"""What `etl status` reports: watermarks, lag behind now, recent runs, row counts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, MetaData, inspect, select

from etl.load.loader import OUTCOMES
from etl.load.revision import HEAD_REVISION, current_revision
from etl.load.schema import table_of
from etl.load.state import StateStore
from etl.normalize import TABLE_COLUMNS
from etl.pipeline.progress import describe_outcomes


def collect_status(engine: Engine, metadata: MetaData, *, runs: int = 10) -> dict[str, Any]:
    """A JSON-ready snapshot of the warehouse's pipeline state."""
    store = StateStore(metadata)
    now = datetime.now(UTC)
    schema = metadata.schema
    existing = set(inspect(engine).get_table_names(schema=schema))
    if "etl_state" not in existing:
        return {"migrated": False, "states": [], "runs": [], "tables": {}}
    revision = current_revision(engine, schema)
    if revision != HEAD_REVISION:  # the tables are not the ones this version reads
        return {"migrated": False, "revision": revision, "states": [], "runs": [], "tables": {}}
    with engine.connect() as conn:
        states = []
        for state in store.states(conn):
            mark = state["watermark"]
            states.append(
                {
                    "state_key": state["state_key"],
                    "site": state["site"],
                    "environment": state["environment"],
                    "filters": state["filters"],
                    "watermark": mark.isoformat() if mark else None,
                    "lag_seconds": round((now - mark).total_seconds()) if mark else None,
                    "updated_at": _iso(state["updated_at"]),
                    "windows_after_watermark": _windows(
                        store.holes(conn, state["state_key"], mark)
                    ),
                }
            )
        recent = []
        for run in store.recent_runs(conn, runs):
            seconds = float(run["seconds"] or 0.0)
            conversations = int(run["conversations"] or 0)
            recent.append(
                {
                    "run_id": run["run_id"],
                    "command": run["command"],
                    "window_start": _iso(run["window_start"]),
                    "window_end": _iso(run["window_end"]),
                    "outcome": run["outcome"],
                    "attempts": run["attempts"],
                    "conversations": conversations,
                    "conversation_outcomes": {
                        name: run[f"conversations_{name}"]
                        for name in OUTCOMES
                        if run[f"conversations_{name}"] is not None
                    },
                    "unknown_elements": len(run["unknown_elements"] or []),
                    "rows": run["rows"] or {},
                    "bytes": run["bytes"],
                    "seconds": seconds,
                    "conversations_per_second": round(conversations / seconds, 1)
                    if seconds
                    else None,
                    "error": run["error"],
                    "finished_at": _iso(run["finished_at"]),
                }
            )
        tables = {name: store.count(conn, table_of(metadata, name)) for name in TABLE_COLUMNS}
        rejects = table_of(metadata, "etl_rejects")
        quarantined = {
            "count": store.count(conn, rejects),
            "latest": [
                {
                    "id": row.id,
                    "conversation_id": row.conversation_id,
                    "source": row.source,
                    "position": row.position,
                    "error": row.error,
                    "attempts": row.attempts,
                    "last_tried_at": _iso(row.last_tried_at),
                }
                for row in conn.execute(
                    select(*(rejects.c[name] for name in _REJECT_COLUMNS))
                    .order_by(rejects.c.last_tried_at.desc(), rejects.c.id.desc())
                    .limit(runs)
                )
            ],
        }
    return {
        "migrated": True,
        "now": now.isoformat(),
        "states": states,
        "runs": recent,
        "rejects": quarantined,
        "tables": tables,
    }


_REJECT_COLUMNS = (
    "id",
    "conversation_id",
    "source",
    "position",
    "error",
    "attempts",
    "last_tried_at",
)


def _windows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ledger's windows past a watermark: loaded ones beyond a hole, failed and claimed."""
    return [
        {
            "window_start": _iso(row["window_start"]),
            "window_end": _iso(row["window_end"]),
            "state": row["state"],
            "claimed_by": row["claimed_by"],
            "heartbeat_at": _iso(row["heartbeat_at"]),
            "committed_at": _iso(row["committed_at"]),
            "attempts": row["attempts"],
            "error": row["error"],
        }
        for row in rows
    ]


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC).isoformat()
    return str(value)


def format_status(status: dict[str, Any]) -> str:
    """The human-readable form."""
    if not status["migrated"]:
        if status.get("revision"):
            return (
                f"The warehouse is at schema revision {status['revision']}, this version needs "
                f"{HEAD_REVISION}: run `etl migrate`."
            )
        return "The warehouse has no schema yet: run `etl migrate`."
    lines: list[str] = []
    if not status["states"]:
        lines.append("Watermark: none yet (no `etl run` or backfill has completed a window).")
    for state in status["states"]:
        lag = state["lag_seconds"]
        behind = f"{lag / 3600:.1f} h behind now" if lag is not None else "n/a"
        lines.append(
            f"Watermark: {state['watermark']} ({behind}) site={state['site']} filters={state['filters']}"
        )
        past = state["windows_after_watermark"]
        if past:
            lines.append(
                f"  {len(past)} window(s) past the watermark (it moves over a window once every "
                "window before it is loaded):"
            )
        for window in past:
            detail = (
                f"by {window['claimed_by']}, heartbeat {window['heartbeat_at']}"
                if window["state"] == "claimed"
                else f"error: {window['error']}"
                if window["state"] == "failed" and window["error"]
                else ""
            )
            lines.append(
                f"    {window['window_start']} → {window['window_end']}  {window['state']:<8}"
                + (f"  {detail}" if detail else "")
            )
    lines.append("")
    lines.append("Recent windows:")
    if not status["runs"]:
        lines.append("  (none)")
    for run in status["runs"]:
        rate = run["conversations_per_second"]
        lines.append(
            f"  {run['window_start']} → {run['window_end']}  {run['outcome']:<11} "
            f"{run['conversations']:>7} conv  {sum(run['rows'].values()):>8} rows  "
            f"{run['seconds']:>7.2f} s  {rate if rate is not None else '-':>8} conv/s  attempts {run['attempts']}"
            + (
                f"\n      {describe_outcomes(run['conversation_outcomes'])}"
                if run["conversation_outcomes"]
                else ""
            )
            + (
                f"\n      {run['unknown_elements']} export element(s) of an unknown type kept in "
                "etl_runs.unknown_elements"
                if run["unknown_elements"]
                else ""
            )
            + (f"\n      error: {run['error']}" if run["error"] else "")
        )
    rejects = status["rejects"]
    lines.append("")
    lines.append(
        f"Quarantined conversations (etl_rejects): {rejects['count']}"
        + (
            " — `etl reprocess-rejects` loads them again once they can be"
            if rejects["count"]
            else ""
        )
    )
    for reject in rejects["latest"]:
        who = reject["conversation_id"] if reject["conversation_id"] is not None else "?"
        lines.append(
            f"  #{reject['id']} conversation {who} ({reject['source']}, position "
            f"{reject['position']}), {reject['attempts']} attempt(s): {reject['error']}"
        )
    lines.append("")
    lines.append("Rows per table:")
    for name, count in status["tables"].items():
        lines.append(f"  {name:<16} {count:>10}")
    return "\n".join(lines)
