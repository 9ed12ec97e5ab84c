"""The forked worker (PostgreSQL's default) writes exactly what the in-process path writes.

The in-process side also runs without the C extensions (ETL_PURE_PYTHON=1), so the compiled
normalizer and COPY formatter are checked end to end against the Python reference.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import TestWarehouse, dump_tables
from tests.pipeline.cli_helpers import etl, write_config


def _save(path: Path, *flags: str) -> Path:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "etl",
            "fake-api",
            "--days",
            "3",
            "--per-day",
            "400",
            "--environments",
            "live",
            "--save",
            str(path),
            *flags,
        ],
        check=True,
        capture_output=True,
    )
    return path


def test_worker_and_in_process_loads_write_identical_tables(
    pg_warehouse: TestWarehouse, another_pg_warehouse: TestWarehouse, tmp_path: Path
) -> None:
    # An early export (conversations so far), then the full one: on the second load most of the
    # first batches are unchanged, some grew, the rest are new, so the worker switches between
    # encoding eagerly and lazily; then the same file again (everything unchanged).
    early = _save(tmp_path / "early.json.gz", "--now", "2024-03-26T12:00:00")
    full = _save(tmp_path / "full.json.gz")
    config = write_config(tmp_path, warehouse={"batch_size": 100})
    for wh, parallel in ((pg_warehouse, "1"), (another_pg_warehouse, "0")):
        env = {"ETL_PARALLEL": parallel, "ETL_PURE_PYTHON": "0" if parallel == "1" else "1"}
        etl("migrate", wh=wh, config=config, check=True)
        for path in (early, full, full):
            etl("load-file", str(path), wh=wh, config=config, extra_env=env, check=True)
    worker, in_process = dump_tables(pg_warehouse), dump_tables(another_pg_warehouse)
    assert len(worker["conversations"]) > 1000
    assert worker == in_process
