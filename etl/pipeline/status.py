"""What `etl status` reports: watermarks, lag behind now, recent runs, row counts; as text,
JSON or the Prometheus text format."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import Engine, MetaData, inspect, select

from etl.load.claims import CLAIMED, FAILED, LOADED
from etl.load.loader import OUTCOMES
from etl.load.revision import HEAD_REVISION, current_revision, revision_advice
from etl.load.schema import table_of
from etl.load.state import StateStore
from etl.normalize import TABLE_COLUMNS
from etl.pipeline.progress import describe_outcomes

if TYPE_CHECKING:  # prometheus_client is imported only when metrics are asked for: every command
    # would otherwise pay for its import at start-up
    from prometheus_client.metrics_core import Metric

# What etl_runs.outcome holds: always reported, at 0 before the first such window.
WINDOW_OUTCOMES: Final = ("ok", "failed", "interrupted")
# What etl_windows.state holds.
LEDGER_STATES: Final = (LOADED, FAILED, CLAIMED)


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
        totals = store.run_totals(conn)
        personal = store.personal_data_totals(conn)
        loaded = {row["state_key"]: row for row in totals if row["outcome"] == "ok"}
        stored = {state["state_key"]: state for state in store.states(conn)}
        # A state key whose first window has not loaded (failed, or still claimed) has no
        # etl_state row yet, and so no watermark; its windows are in the ledger all the same.
        keys = [*stored, *(key for key in store.ledger_keys(conn) if key not in stored)]
        states = []
        for key in keys:
            state = stored.get(key, {})
            mark = state.get("watermark")
            ok = loaded.get(key)
            states.append(
                {
                    "state_key": key,
                    "site": state.get("site"),
                    "environment": state.get("environment"),
                    "filters": state.get("filters"),
                    "watermark": mark.isoformat() if mark else None,
                    "lag_seconds": round((now - mark).total_seconds()) if mark else None,
                    "updated_at": _iso(state.get("updated_at")),
                    "windows_after_watermark": _windows(store.holes(conn, key, mark)),
                    "last_ok_window_end": _iso(ok["last_window_end"]) if ok else None,
                    "last_ok_finished_at": _iso(ok["last_finished_at"]) if ok else None,
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
        "totals": _totals(totals),
        "personal_data": personal,
    }


def _totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The whole run log: windows per outcome, and the conversations of the windows that
    loaded (outcome "ok"), in all and by what the load did with them."""
    windows = dict.fromkeys(WINDOW_OUTCOMES, 0)
    for row in rows:
        windows[row["outcome"]] = windows.get(row["outcome"], 0) + int(row["windows"])
    ok = [row for row in rows if row["outcome"] == "ok"]
    return {
        "windows": windows,
        "conversations": sum(int(row["conversations"]) for row in ok),
        "conversation_outcomes": {
            name: sum(int(row[f"conversations_{name}"]) for row in ok) for name in OUTCOMES
        },
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
            advice = revision_advice(status["revision"])
            return f"The warehouse is at schema revision {status['revision']}, {advice}."
        return "The warehouse has no schema yet: run `etl migrate`."
    lines: list[str] = []
    if not status["states"]:
        lines.append("Watermark: none yet (no `etl run` or backfill has completed a window).")
    for state in status["states"]:
        lag = state["lag_seconds"]
        behind = f"{lag / 3600:.1f} h behind now" if lag is not None else "n/a"
        if state["watermark"] is None:  # no etl_state row yet
            lines.append(
                f"Watermark: none yet for state key {state['state_key'][:12]}: its first window "
                "has not loaded"
            )
        else:
            lines.append(
                f"Watermark: {state['watermark']} ({behind}) site={state['site']} "
                f"filters={state['filters']}"
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
    personal = status["personal_data"]
    lines.append("")
    lines.append(
        f"Personal data: {personal['forgotten']} conversation(s) erased (`etl forget`), "
        f"{personal['deleted']} found deleted at the source, {personal['pruned']} pruned"
    )
    lines.append("")
    lines.append("Rows per table:")
    for name, count in status["tables"].items():
        lines.append(f"  {name:<16} {count:>10}")
    return "\n".join(lines)


def prometheus_text(status: Mapping[str, Any] | None) -> str:
    """`status` (collect_status's snapshot) in the Prometheus text exposition format, for
    node_exporter's textfile collector; None: the warehouse could not be read (convo_etl_up 0).
    """
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_StatusCollector(status))
    return generate_latest(registry).decode()


class _StatusCollector:
    """The snapshot's gauges, all named convo_etl_*; each HELP names its unit."""

    def __init__(self, status: Mapping[str, Any] | None) -> None:
        self.status = status

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.metrics_core import GaugeMetricFamily

        status = self.status
        yield GaugeMetricFamily(
            "convo_etl_up",
            "1 if etl status could read the warehouse, 0 if not (a database error).",
            value=0 if status is None else 1,
        )
        if status is None:
            return
        yield GaugeMetricFamily(
            "convo_etl_migrated",
            "1 if the warehouse schema is at the revision this version needs, 0 if not "
            "(no schema yet, or an older one: run etl migrate); nothing more is reported then.",
            value=1 if status["migrated"] else 0,
        )
        if not status["migrated"]:
            return
        yield from self._states(status["states"])
        yield from self._totals(status["totals"])
        yield GaugeMetricFamily(
            "convo_etl_rejects",
            "Conversations in quarantine (rows of etl_rejects), a count.",
            value=status["rejects"]["count"],
        )
        personal = GaugeMetricFamily(
            "convo_etl_personal_data_conversations",
            "Conversations erased by etl forget (forgotten), found deleted at the source "
            "(deleted) and removed by retention (pruned), summed over the run log; a count.",
            labels=["action"],
        )
        for action, count in status["personal_data"].items():
            personal.add_metric([action], count)
        yield personal
        table_rows = GaugeMetricFamily(
            "convo_etl_table_rows", "Rows in each warehouse table, a count.", labels=["table"]
        )
        for name, count in status["tables"].items():
            table_rows.add_metric([name], count)
        yield table_rows
        yield GaugeMetricFamily(
            "convo_etl_status_timestamp_seconds",
            "When etl status read the warehouse (the instant convo_etl_lag_seconds is measured "
            "at), Unix time in seconds.",
            value=_unix(status["now"]),
        )

    @staticmethod
    def _states(states: list[dict[str, Any]]) -> Iterator[Metric]:
        from prometheus_client.metrics_core import GaugeMetricFamily

        labels = ["state_key", "site", "environment"]
        watermark = GaugeMetricFamily(
            "convo_etl_watermark_timestamp_seconds",
            "Watermark: everything before it is loaded, Unix time in seconds.",
            labels=labels,
        )
        lag = GaugeMetricFamily(
            "convo_etl_lag_seconds",
            "How far the watermark is behind the time of convo_etl_status_timestamp_seconds, "
            "in seconds.",
            labels=labels,
        )
        last_ok_end = GaugeMetricFamily(
            "convo_etl_last_success_window_end_timestamp_seconds",
            'End of the furthest window loaded successfully (etl_runs outcome "ok"), Unix time '
            "in seconds; past the watermark when a window before it did not load.",
            labels=labels,
        )
        last_ok_at = GaugeMetricFamily(
            "convo_etl_last_success_timestamp_seconds",
            'When a window last finished loading successfully (etl_runs outcome "ok"), Unix '
            "time in seconds.",
            labels=labels,
        )
        past = GaugeMetricFamily(
            "convo_etl_windows_past_watermark",
            "Windows after the watermark in the window ledger (etl_windows), by state: loaded "
            "beyond a hole, failed, or claimed by a run; a count.",
            labels=[*labels, "state"],
        )
        for state in states:
            values = [state["state_key"], state["site"] or "", state["environment"] or ""]
            if state["watermark"] is not None:
                watermark.add_metric(values, _unix(state["watermark"]))
                lag.add_metric(values, state["lag_seconds"])
            if state["last_ok_window_end"] is not None:
                last_ok_end.add_metric(values, _unix(state["last_ok_window_end"]))
            if state["last_ok_finished_at"] is not None:
                last_ok_at.add_metric(values, _unix(state["last_ok_finished_at"]))
            counts = dict.fromkeys(LEDGER_STATES, 0)
            for window in state["windows_after_watermark"]:
                counts[window["state"]] = counts.get(window["state"], 0) + 1
            for name, count in counts.items():
                past.add_metric([*values, name], count)
        yield from (watermark, lag, last_ok_end, last_ok_at, past)

    @staticmethod
    def _totals(totals: dict[str, Any]) -> Iterator[Metric]:
        from prometheus_client.metrics_core import GaugeMetricFamily

        windows = GaugeMetricFamily(
            "convo_etl_windows",
            "Windows in the run log (rows of etl_runs) by outcome: ok, failed (after all its "
            "retries) or interrupted; a count, which only grows.",
            labels=["outcome"],
        )
        for outcome, count in totals["windows"].items():
            windows.add_metric([outcome], count)
        yield windows
        yield GaugeMetricFamily(
            "convo_etl_conversations",
            'Conversations received by the windows that loaded (etl_runs outcome "ok"), summed '
            "over the run log; a count.",
            value=totals["conversations"],
        )
        outcomes = GaugeMetricFamily(
            "convo_etl_conversation_outcomes",
            'What the windows that loaded (etl_runs outcome "ok") did with their conversations: '
            "new, changed, unchanged, older (a later copy was stored), rejected (quarantined) "
            "or forgotten (erased by etl forget, kept out); a count, summed over the run log.",
            labels=["outcome"],
        )
        for outcome, count in totals["conversation_outcomes"].items():
            outcomes.add_metric([outcome], count)
        yield outcomes


def _unix(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()
