"""The SQL examples in docs/schema.md run on a PostgreSQL warehouse loaded by `etl`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SEED_EXPORT, TestWarehouse
from tests.pipeline.cli_helpers import etl

SCHEMA_DOC = Path(__file__).parents[1] / "docs" / "schema.md"


def _examples() -> list[str]:
    return re.findall(r"```sql\n(.*?)```", SCHEMA_DOC.read_text(), flags=re.DOTALL)


@pytest.mark.postgres
def test_every_example_query_runs_on_a_loaded_warehouse(pg_warehouse: TestWarehouse) -> None:
    etl("migrate", wh=pg_warehouse, check=True)
    etl("load-file", str(SEED_EXPORT), wh=pg_warehouse, check=True)
    examples = _examples()
    assert len(examples) >= 8, "the examples moved: update this test's pattern"
    results: dict[str, list[Any]] = {}
    engine = pg_warehouse.engine()
    try:
        with engine.connect() as conn:
            raw = conn.connection.driver_connection
            assert raw is not None
            raw.execute(f'SET search_path = "{pg_warehouse.schema}"')
            for query in examples:
                results[query] = raw.execute(query).fetchall()
    finally:
        engine.dispose()
    (transcript,) = [rows for query, rows in results.items() if "1000001" in query]
    assert [row[0] for row in transcript][:2] == [0, 0]  # the first message, its content
    assert len(transcript) >= 4
    (runs,) = [rows for query, rows in results.items() if "FROM etl_runs" in query]
    assert [row[4] for row in runs] == ["ok"]  # outcome of the one window loaded
