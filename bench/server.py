"""The bench's PostgreSQL: ETL_BENCH_DATABASE_URL's, or a throwaway embedded server."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def say(message: str = "") -> None:
    print(message, flush=True)


def libpq_dsn(url: str) -> str:
    """`postgresql+psycopg://...` (SQLAlchemy) -> `postgresql://...` (libpq, psycopg, dlt)."""
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme.startswith("postgresql"):
        raise SystemExit(f"ETL_BENCH_DATABASE_URL must be a postgresql URL, got {url!r}")
    return f"postgresql://{rest}"


@contextmanager
def database_url(name: str = "bench") -> Iterator[str]:
    """ETL_BENCH_DATABASE_URL, or else a throwaway embedded server's for the run's duration."""
    url = os.environ.get("ETL_BENCH_DATABASE_URL")
    if url:
        yield url
        return
    # The tests' server module (tests/ is not installed, so it is imported from the checkout).
    sys.path.insert(0, str(ROOT))
    from tests import pgserver

    started = time.perf_counter()
    # Server defaults (durable commits), as a real warehouse has them: the suite's
    # NOT_DURABLE settings would flatter the loads.
    with pgserver.running(name) as server:
        say(
            f"PostgreSQL: a throwaway embedded server on {pgserver.HOST}:{server.port}, "
            f"started in {time.perf_counter() - started:.1f} s, removed at the end "
            "(ETL_BENCH_DATABASE_URL names another)"
        )
        yield server.url
