"""The Dagster asset (etl.integrations.dagster), run by Dagster's own API against PostgreSQL."""

from __future__ import annotations

import dataclasses
import random
import threading
from datetime import UTC
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from sqlalchemy import text

from etl.integrations.dagster import ASSET, build_definitions, settings_from_environment
from etl.windows import parse_instant
from tests.conftest import SIM_TOKEN, TestWarehouse, dump_tables
from tests.pipeline.cli_helpers import etl, write_config
from tests.pipeline.test_e2e import OSLO, START, UNTIL, watermark

PIPELINE = {"start": START, "window": "1d", "lag": "2h", "timezone": "Europe/Oslo"}


def test_partitions_materialized_in_any_order_and_at_once_equal_a_serial_backfill(
    pg_warehouse: TestWarehouse,
    another_pg_warehouse: TestWarehouse,
    make_sim: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    api = make_sim()
    config = write_config(tmp_path, pipeline=PIPELINE)
    reference = another_pg_warehouse
    etl("migrate", wh=reference, config=config, check=True)
    etl("backfill", "--from", START, "--to", UNTIL, wh=reference, api=api, config=config,
        check=True)  # fmt: skip
    expected = dump_tables(reference, volatile=False)

    wh = pg_warehouse
    etl("migrate", wh=wh, config=config, check=True)
    for name, value in {
        **wh.env(),
        "ETL_API_URL": api.url,
        "ETL_API_TOKEN": SIM_TOKEN,
        "ETL_CONFIG": str(config),
    }.items():
        monkeypatch.setenv(name, value)
    defs = build_definitions(settings_from_environment())
    asset = defs.get_assets_def(ASSET)
    daily = asset.partitions_def
    assert daily is not None
    keys = [k for k in daily.get_partition_keys() if START <= k < UNTIL]
    assert len(keys) == 5

    # Three partitions one after the other, out of order; then the other two at once, each
    # in its own run, as a Dagster backfill runs them.
    random.Random(3).shuffle(keys)
    for key in keys[:3]:
        with dg.DagsterInstance.ephemeral() as instance:
            result = dg.materialize([asset], partition_key=key, instance=instance)
        assert result.success
        (materialization,) = result.asset_materializations_for_node(ASSET)
        meta = materialization.metadata
        assert materialization.partition == key
        assert meta["conversations"].value > 0 and meta["attempts"].value == 1
        assert meta["rows_total"].value == sum(meta["rows"].value.values()) > 0
    outcomes: list[bool] = []

    def materialize(key: str) -> None:
        # Disposed in the thread that made it: its SQLite storage is bound to that thread.
        with dg.DagsterInstance.ephemeral() as instance:
            result = dg.materialize([asset], partition_key=key, instance=instance)
        outcomes.append(result.success)

    threads = [threading.Thread(target=materialize, args=(key,)) for key in keys[3:]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes == [True, True]

    assert dump_tables(wh, volatile=False) == expected
    assert watermark(wh) == parse_instant(UNTIL, OSLO).astimezone(UTC).isoformat()


def test_the_nightly_schedule_and_the_pool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write_config(tmp_path, pipeline={**PIPELINE, "lag": "150m"})
    monkeypatch.setenv("ETL_CONFIG", str(config))
    defs = build_definitions(settings_from_environment())
    schedule = defs.resolve_schedule_def("convo_etl_nightly")
    assert schedule.cron_schedule == "30 2 * * *"  # the day that ended pipeline.lag ago
    assert schedule.execution_timezone == "Europe/Oslo"
    assert defs.get_assets_def(ASSET).specs_by_key[dg.AssetKey(ASSET)] is not None
    assert next(iter(defs.get_assets_def(ASSET).node_def.pools)) == "convo_etl_api"


@pytest.mark.parametrize(
    ("pipeline", "needle"),
    [({"window": "6h"}, "pipeline.window"), ({"start": None}, "pipeline.start")],
)
def test_settings_dagster_cannot_partition_are_refused_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pipeline: dict[str, Any], needle: str
) -> None:
    from etl.errors import ConfigError

    settings = {**PIPELINE, **pipeline}
    config = write_config(tmp_path, pipeline={k: v for k, v in settings.items() if v})
    monkeypatch.setenv("ETL_CONFIG", str(config))
    with pytest.raises(ConfigError, match=needle):
        build_definitions(settings_from_environment())


def test_with_retention_a_daily_job_prunes_like_etl_prune(
    sqlite_warehouse: TestWarehouse, make_sim: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = make_sim()
    config = write_config(tmp_path, pipeline=PIPELINE, warehouse={"retention": "30d"})
    wh = sqlite_warehouse
    etl("migrate", wh=wh, config=config, check=True)
    etl("backfill", "--from", START, "--to", UNTIL, wh=wh, api=api, config=config, check=True)
    stored = _count(wh, "conversations")
    assert stored > 0
    for name, value in {**wh.env(), "ETL_CONFIG": str(config)}.items():
        monkeypatch.setenv(name, value)
    settings = settings_from_environment()
    defs = build_definitions(settings)
    (schedule,) = [s for s in defs.schedules or [] if s.name == "convo_etl_retention"]
    assert schedule.cron_schedule == "0 3 * * *"  # an hour after the nightly partition (lag 2h)
    assert schedule.execution_timezone == "Europe/Oslo"

    job = defs.get_job_def("convo_etl_prune_job")
    with dg.DagsterInstance.ephemeral() as instance:
        assert job.execute_in_process(instance=instance).success

    assert _count(wh, "conversations") == 0  # 2024 is more than 30 days ago
    engine = wh.engine()
    try:
        with engine.connect() as conn:
            pruned = conn.execute(
                text(
                    f"SELECT conversations_pruned FROM {wh.table('etl_runs')} "
                    "WHERE command = 'prune'"
                )
            ).scalar_one()
    finally:
        engine.dispose()
    assert pruned == stored

    keep_all = dataclasses.replace(
        settings, warehouse=dataclasses.replace(settings.warehouse, retention=None)
    )
    assert [j.name for j in build_definitions(keep_all).jobs or []] == ["convo_etl_job"]


def _count(wh: TestWarehouse, table: str) -> int:
    engine = wh.engine()
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(f"SELECT count(*) FROM {wh.table(table)}")).scalar_one())
    finally:
        engine.dispose()
