"""The metric views on a year of data: each view's typical dashboard query, timed, with the
indexes its plan uses (issue 15: none should take more than a second).

A year of synthetic conversations (about 200,000) is generated once by the simulator into
bench/data/, loaded with `etl load-file` into its own PostgreSQL schema, analysed, and each
query is run `--repeat` times after one warm-up; the median is reported. Run on its own:

    ETL_BENCH_DATABASE_URL=postgresql+psycopg://... python bench/views.py

or as part of `make bench` (bench/run.py, unless --no-views).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from server import database_url, libpq_dsn, say

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT / "bench" / "data"
RESULTS = ROOT / "bench" / "results" / "views.json"
ETL = shutil.which("etl", path=str(Path(sys.executable).parent)) or "etl"
SCHEMA = "bench_views"
LIMIT_SECONDS = 1.0

# 365 days from 2024-01-01, 625 conversations a day of which about 550 are exported (the others
# have no end-user interaction): about 200,000 in all.
DATASET_ARGS = (
    "--seed=3",
    "--start=2024-01-01",
    "--days=365",
    "--per-day=625",
    "--environments=live,test",
    "--messages-per-conversation=7",
)
LAST_DAY = "2024-12-30"  # the dataset's last day (2024 has 366)

# What a dashboard asks of each view: a recent range, a top-N, a year's trend.
QUERIES: dict[str, str] = {
    "daily_metrics, last 30 days": f"""
        SELECT * FROM daily_metrics
        WHERE local_date > DATE '{LAST_DAY}' - 30 ORDER BY local_date, environment""",
    "daily_metrics, a year by week": """
        SELECT date_trunc('week', local_date) AS week, sum(conversations),
               sum(contained_conversations)::float / nullif(sum(engaged_conversations), 0)
        FROM daily_metrics GROUP BY 1 ORDER BY 1""",
    "conversation_facts, one day": f"""
        SELECT * FROM conversation_facts WHERE local_date = DATE '{LAST_DAY}'
        ORDER BY started_at""",
    "conversation_facts, hours of a week": f"""
        SELECT local_hour, count(*), avg(duration_seconds) FROM conversation_facts
        WHERE local_date > DATE '{LAST_DAY}' - 7 GROUP BY local_hour ORDER BY local_hour""",
    "intent_daily, top 20 of 30 days": f"""
        SELECT intent_id, max(intent_title), sum(questions) AS questions FROM intent_daily
        WHERE local_date > DATE '{LAST_DAY}' - 30
        GROUP BY intent_id ORDER BY questions DESC LIMIT 20""",
    "button_daily, 30 days": f"""
        SELECT button_id, sum(shown), sum(clicked) FROM button_daily
        WHERE local_date > DATE '{LAST_DAY}' - 30 GROUP BY button_id ORDER BY 2 DESC""",
    "button_metrics, top 20": """
        SELECT * FROM button_metrics ORDER BY shown DESC LIMIT 20""",
    "pipeline_daily, all": """
        SELECT * FROM pipeline_daily ORDER BY load_date""",
}


# "Index Scan using ix_…", "Index Only Scan using …", "Bitmap Index Scan on …" in a plan.
_INDEX_SCAN = re.compile(r"Index (?:Only )?Scan (?:Backward )?(?:using|on) (\w+)")


@dataclass
class Timing:
    query: str
    median_s: float
    runs_s: list[float]
    rows: int
    indexes: list[str]
    plan: str


def ensure_dataset() -> Path:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    path = DATA_DIR / "export-views-year.json.gz"
    stamp = path.with_name(path.name + ".args")
    wanted = " ".join(DATASET_ARGS)
    if not path.exists() or not stamp.exists() or stamp.read_text().strip() != wanted:
        say(f"  generating {path.relative_to(ROOT)} (etl fake-api {wanted} --save) ...")
        started = time.perf_counter()
        subprocess.run([ETL, "fake-api", *DATASET_ARGS, "--save", str(path)], check=True)
        stamp.write_text(wanted + "\n")
        say(f"  generated in {time.perf_counter() - started:.0f} s")
    return path


def load(url: str, path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETL_")}
    env.update({"ETL_DATABASE_URL": url, "ETL_DATABASE_SCHEMA": SCHEMA})
    with psycopg.connect(libpq_dsn(url), autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    started = time.perf_counter()
    for command in (["migrate"], ["load-file", str(path)]):
        subprocess.run([ETL, "-q", *command], env=env, check=True)
    with psycopg.connect(libpq_dsn(url), autocommit=True) as conn:
        conn.execute(f"SET search_path = {SCHEMA}")
        conn.execute("VACUUM ANALYZE")
        count = conn.execute("SELECT count(*) FROM conversations").fetchone()
    say(
        f"  loaded {count[0] if count else 0:,} conversations in {time.perf_counter() - started:.0f} s"
    )


def measure(url: str, repeat: int) -> list[Timing]:
    timings = []
    with psycopg.connect(libpq_dsn(url), autocommit=True) as conn:
        conn.execute(f"SET search_path = {SCHEMA}")
        for name, query in QUERIES.items():
            plan = "\n".join(
                row[0] for row in conn.execute(f"EXPLAIN (ANALYZE, BUFFERS) {query}").fetchall()
            )
            rows = len(conn.execute(query).fetchall())  # warm-up
            runs = []
            for _ in range(repeat):
                started = time.perf_counter()
                conn.execute(query).fetchall()
                runs.append(time.perf_counter() - started)
            indexes = sorted(set(_INDEX_SCAN.findall(plan)))
            timings.append(Timing(name, statistics.median(runs), runs, rows, indexes, plan))
    return timings


def report(timings: Sequence[Timing]) -> bool:
    say("\nMetric views on a year of data (PostgreSQL; median of the runs):")
    say(f"  {'query':<38} {'rows':>6} {'median':>9}  indexes in the plan")
    for t in timings:
        say(
            f"  {t.query:<38} {t.rows:>6} {t.median_s * 1000:>7.1f} ms  "
            f"{', '.join(t.indexes) or '(none: sequential scans)'}"
        )
    slow = [t.query for t in timings if t.median_s > LIMIT_SECONDS]
    if slow:
        say(f"  FAIL: over {LIMIT_SECONDS:.0f} s: {', '.join(slow)}")
    else:
        say(f"  every query under {LIMIT_SECONDS:.0f} s")
    return not slow


def run(url: str, repeat: int = 5, keep: bool = False) -> tuple[bool, list[dict[str, Any]]]:
    """Generate, load, measure; (every query under the limit, the timings as JSON)."""
    say("\nMetric views (bench/views.py):")
    path = ensure_dataset()
    load(url, path)
    try:
        timings = measure(url, repeat)
    finally:
        if not keep:
            with psycopg.connect(libpq_dsn(url), autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    ok = report(timings)
    return ok, [t.__dict__ for t in timings]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per query")
    parser.add_argument("--keep-data", action="store_true", help="keep the bench_views schema")
    parser.add_argument("--output", type=Path, default=RESULTS, help="results JSON")
    args = parser.parse_args(argv)
    with database_url("bench-views") as url:
        ok, timings = run(url, args.repeat, args.keep_data)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps({"limit_seconds": LIMIT_SECONDS, "queries": timings}, indent=2)
    )
    say(f"\nResults: {args.output}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
