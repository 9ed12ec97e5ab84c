"""Dagster: the export's windows as the daily partitions of one asset, loaded by the same code.

    pip install 'convo-etl[dagster]'
    ETL_CONFIG=/etc/convo-etl/etl.toml dagster dev -m etl.integrations.dagster

`defs` gives one asset, `conversations`, partitioned by day from `pipeline.start` in
`pipeline.timezone`. Materializing a partition loads its window exactly as `etl backfill` does:
claimed in the window ledger, in one transaction, with its retries, moving the watermark by the
contiguous-run rule; so Dagster backfills run partitions in parallel on any run launcher, beside
a nightly `etl run` if there is one. Each materialization reports the window's counts as
metadata. The schedule `convo_etl_nightly` materializes the day that ended `pipeline.lag` ago;
the asset runs in the concurrency pool `convo_etl_api`, which caps the partitions loading at once
across runs (`dagster instance concurrency set convo_etl_api 4`). With warehouse.retention set,
the job `convo_etl_prune_job` and its schedule `convo_etl_retention` prune daily, an hour after
the nightly partition, as `etl prune` does. Settings and secrets come from the environment and
`ETL_CONFIG`, as for the CLI, when Dagster loads this module.
"""

# No `from __future__ import annotations`: Dagster reads the asset's `context` annotation as an
# object, and refuses it as a string.
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import dagster as dg

from etl import env
from etl.config import Settings, load_settings
from etl.errors import ConfigError, LockedError
from etl.load.claims import Held
from etl.load.state import WindowReport
from etl.pipeline.personal import Erased, prune
from etl.pipeline.runner import Pipeline
from etl.windows import Window

POOL: Final = "convo_etl_api"
ASSET: Final = "conversations"


def settings_from_environment() -> Settings:
    """The configuration as the CLI resolves it without flags: ETL_CONFIG, then the env."""
    path = os.environ.get(env.CONFIG)
    return load_settings(Path(path) if path else None, env=os.environ)


def partitions(settings: Settings) -> dg.DailyPartitionsDefinition:
    """Daily partitions from pipeline.start, in pipeline.timezone."""
    p = settings.pipeline
    if p.start is None:
        raise ConfigError(
            f"the Dagster asset needs pipeline.start ({settings.source}): its partitions begin there"
        )
    if p.window != timedelta(days=1):
        raise ConfigError(
            f"pipeline.window is {p.window} ({settings.source}): the Dagster asset's partitions "
            'are days, so set pipeline.window = "1d" for it'
        )
    zone = str(getattr(p.timezone, "key", None) or "UTC")
    return dg.DailyPartitionsDefinition(
        start_date=p.start.astimezone(p.timezone).strftime("%Y-%m-%d"), timezone=zone
    )


def load_partition(settings: Settings, window: Window) -> WindowReport | Held:
    """Load one window as `etl backfill` would (the asset's body, without Dagster)."""
    pipeline = Pipeline(settings, command="dagster")
    try:
        # SQLite: one process at a time (see Pipeline.lock_for_windows); another one's window
        # is waited for like a window another run holds.
        with pipeline.lock_for_windows():
            pipeline.check_schema()
            result = pipeline.backfill([window])
    except LockedError:
        return Held("another process is loading into this SQLite warehouse")
    finally:
        pipeline.close()
    return result.windows[0] if result.windows else Held("another run has it")


def prune_expired(settings: Settings) -> Erased:
    """Prune what warehouse.retention no longer keeps, as `etl prune` does."""
    retention = settings.warehouse.retention
    if retention is None:
        raise ConfigError(f"warehouse.retention is not set ({settings.source}): nothing to prune")
    pipeline = Pipeline(settings, command="prune")
    try:
        pipeline.check_schema(loads=False)
        return prune(pipeline, datetime.now(UTC) - retention)
    finally:
        pipeline.close()


def metadata(report: WindowReport) -> dict[str, Any]:
    """A window's counts as a materialization's metadata."""
    return {
        "conversations": report.conversations,
        "rows": dg.MetadataValue.json(report.rows),
        "rows_total": sum(report.rows.values()),
        "conversation_outcomes": dg.MetadataValue.json(report.conversation_outcomes),
        "seconds": round(report.seconds, 3),
        "attempts": report.attempts,
        "bytes": report.bytes,
    }


def build_definitions(settings: Settings) -> dg.Definitions:
    """The asset, its job and the nightly schedule for `settings`."""
    daily = partitions(settings)

    @dg.asset(
        name=ASSET,
        partitions_def=daily,
        pool=POOL,
        group_name="convo_etl",
        kinds={"python", "sql"},
        description="The export's conversations of one day, flattened into the warehouse "
        "tables (conversations, messages, content, buttons, intent_analysis, intents, actions).",
    )
    def conversations(context: dg.AssetExecutionContext) -> dg.MaterializeResult[Any]:
        span = context.partition_time_window
        window = Window(span.start.astimezone(UTC), span.end.astimezone(UTC))
        outcome = load_partition(settings, window)
        if isinstance(outcome, Held):
            # Another process (an `etl run`, another Dagster run) is loading this window, or
            # loaded it while this one ran: try again later, when its ledger row says which.
            raise dg.RetryRequested(max_retries=5, seconds_to_wait=60)
        context.log.info(
            f"window {window}: {outcome.conversations} conversations, "
            f"{sum(outcome.rows.values())} rows in {outcome.seconds:.1f}s"
        )
        return dg.MaterializeResult(metadata=metadata(outcome))

    job = dg.define_asset_job("convo_etl_job", selection=[conversations])
    lag = settings.pipeline.lag
    if lag >= timedelta(days=1):
        raise ConfigError(
            f"pipeline.lag is {lag} ({settings.source}): the nightly schedule runs within the "
            "day after each partition, so it must be under a day"
        )
    minutes = int(lag.total_seconds() // 60)
    nightly = dg.build_schedule_from_partitioned_job(
        job,
        name="convo_etl_nightly",
        hour_of_day=minutes // 60,
        minute_of_hour=minutes % 60,
    )
    jobs: list[Any] = [job]
    schedules = [nightly]
    if settings.warehouse.retention is not None:

        @dg.op(
            name="convo_etl_prune", description="Prune what warehouse.retention no longer keeps."
        )
        def prune_op(context: dg.OpExecutionContext) -> None:
            pruned = prune_expired(settings)
            context.log.info(
                f"pruned {len(pruned.conversations)} conversation(s); rows: {pruned.rows}"
            )

        @dg.job(name="convo_etl_prune_job")
        def prune_job() -> None:
            prune_op()

        jobs.append(prune_job)
        schedules.append(
            dg.ScheduleDefinition(
                name="convo_etl_retention",
                job=prune_job,
                cron_schedule=f"{minutes % 60} {(minutes // 60 + 1) % 24} * * *",
                execution_timezone=daily.timezone,
            )
        )
    return dg.Definitions(assets=[conversations], jobs=jobs, schedules=schedules)


@dg.definitions
def defs() -> dg.Definitions:
    """What `dagster dev -m etl.integrations.dagster` loads: resolved when Dagster loads the
    code location (not when the module is imported), so a missing setting is reported there."""
    return build_definitions(settings_from_environment())
