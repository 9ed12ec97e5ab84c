"""The benchmark: this project against a parse floor, a load floor and dlt, on one machine.

    python bench/run.py [--size 20000] [--repeat 3] [--only a,b,c,d,e] [--skip-dlt]
                        [--scaling/--no-scaling] [--keep-data] ...

Variants (each a fresh process, wall time and peak RSS measured by bench/measure.py):
  a  parse floor      ijson (yajl2_c) over the export file, counting conversations
  b  load floor       the same parse + a minimal flatten + psycopg COPY into bare tables
  c  this project     `etl backfill` over the simulator (HTTP, gzip), and `etl load-file`
  d  dlt              merge load of the same file, its re-run, and a tuned variant
  e  project re-run   the same `etl backfill` again over the loaded data
Plus a memory-scaling run: `etl backfill` of one window of 1x, 4x and 16x --scaling-base; and
the scale-out rows (--scale-out): a month of daily windows against a simulator paced like a real
server (0.5 s per query, 500 conversations/s, 4 requests at once), `etl backfill --workers 1, 4,
8`, and dlt against the same server. And the metric views (--views, bench/views.py): each
view's typical dashboard query over a year of data, about 200,000 conversations.

Prints a table and the ratios against the targets; writes bench/results/latest.json.
Exit status: 1 if one of the project's own variants failed, else 0 (targets are not asserted).
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import views
from measure import Measurement, run_measured
from server import database_url, libpq_dsn, say

from etl.fakeapi.process import fake_api_process

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
DATA_DIR = BENCH / "data"
RESULTS_DIR = BENCH / "results"
PYTHON = sys.executable
ETL = shutil.which("etl", path=str(Path(sys.executable).parent)) or "etl"
TOKEN = "bench-token"  # the simulator's static token (loopback only)

PROJECT_SCHEMA = "bench_project"
FLOOR_SCHEMA = "bench_floor"
DLT_SCHEMA = "bench_dlt"
DLT_TUNED_SCHEMA = "bench_dlt_tuned"
# Everything this script may create (dlt adds a *_staging dataset for merges).
OWN_SCHEMAS = (
    PROJECT_SCHEMA,
    FLOOR_SCHEMA,
    DLT_SCHEMA,
    f"{DLT_SCHEMA}_staging",
    DLT_TUNED_SCHEMA,
    f"{DLT_TUNED_SCHEMA}_staging",
)
# The project's fact tables; the load floor writes the same five, so row counts compare.
FACT_TABLES = ("conversations", "messages", "content", "buttons", "intent_analysis")

# Targets (reported, never asserted).
EFFICIENCY_MIN = 0.7  # issue 12: no C of our own, only compiled libraries
SPEEDUP_DLT_MIN = 8.0
SPEEDUP_DLT_TUNED_MIN = 3.5
# Issue 13's scale-out rows: a month of daily windows against a server that takes 0.5 s per
# query, serializes 500 conversations a second per request and answers 4 requests at once.
SCALE_OUT_START = "2024-03-25"
SCALE_OUT_DAYS = 30
SCALE_OUT_PER_DAY = 100
SCALE_OUT_SERVER = ("--latency=0.5", "--rate=500", "--max-concurrent=4")
SCALE_OUT_WORKERS = (1, 4, 8)
SCALE_OUT_SPEEDUP_MIN = 3.2  # --workers 4 against serial: 80% of the ideal 4x
RSS_MAX_MB = 150.0
RSS_GROWTH_MAX = 0.10

# ---- small helpers ------------------------------------------------------------------------------


def tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def indent(text: str, prefix: str = "      | ") -> str:
    return "\n".join(prefix + line for line in text.splitlines())


def last_json_line(text: str) -> dict[str, Any] | None:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            return value if isinstance(value, dict) else None
    return None


# ---- PostgreSQL ---------------------------------------------------------------------------------

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _proc_stat(pid: int) -> list[str] | None:
    """/proc/PID/stat from its third field (state, ppid, ...) on, or None if it cannot be read.

    The second field, the command name in parentheses, may hold spaces: the rest follows the
    last ")".
    """
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def _children(parent: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _proc_stat(int(entry.name))
            if fields is not None and fields[1] == str(parent):
                children.append(int(entry.name))
    return children


class Postgres:
    """The driver's own connection: schema resets and row counts (never inside a measurement)."""

    def __init__(self, dsn: str) -> None:
        import psycopg

        self._conn = psycopg.connect(dsn, autocommit=True)
        self._conn.execute("SET client_min_messages = warning")

    def close(self) -> None:
        self._conn.close()

    def _postmaster(self) -> int | None:
        """The server's main process when it runs on this machine (its processes show in
        /proc), else None."""
        row = self._conn.execute("SELECT pg_backend_pid()").fetchone()
        backend = int(row[0]) if row else 0
        try:
            # A PID of another machine's server may name some process here: a backend's
            # command line says what it is ("postgres: user db host(port) idle").
            if not Path(f"/proc/{backend}/cmdline").read_bytes().startswith(b"postgres:"):
                return None
        except OSError:
            return None
        fields = _proc_stat(backend)
        return int(fields[1]) if fields else None

    def server_cpu(self) -> float | None:
        """CPU seconds (user + system) the server's processes have used so far, or None when
        they cannot be seen (a server on another machine, or in a container of its own).

        The main process's exited children (a connection's backend, once it closes) and its
        live ones (background and IO workers, autovacuum, open connections). What a run sets
        off for autovacuum is done before the next one starts (`quiesce`).
        """
        postmaster = self._postmaster()
        fields = _proc_stat(postmaster) if postmaster else None
        if postmaster is None or fields is None:
            return None
        ticks = int(fields[13]) + int(fields[14])  # cutime, cstime
        for child in _children(postmaster):
            child_fields = _proc_stat(child)
            if child_fields is not None:
                ticks += int(child_fields[11]) + int(child_fields[12])  # utime, stime
        return ticks / _CLOCK_TICKS

    def quiesce(self, timeout: float = 60.0) -> None:
        """Do now, outside any measurement, the vacuuming and analyzing the runs so far set
        off, and wait for autovacuum workers to end: otherwise autovacuum, started by one run's
        commits, works through the next run on the same two cores, slowing it and adding to
        its server CPU. Every variant starts on a server with nothing pending."""
        self._conn.execute("VACUUM (ANALYZE)")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            row = self._conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'"
            ).fetchone()
            if not row or not row[0]:
                break
            time.sleep(0.05)

    def clients(self) -> set[int]:
        """The backends of the other connections to the server."""
        rows = self._conn.execute(
            "SELECT pid FROM pg_stat_activity "
            "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
        ).fetchall()
        return {int(row[0]) for row in rows}

    def settle(self, earlier: set[int], timeout: float = 5.0) -> None:
        """Wait until the backends of connections opened since `earlier` (the clients then)
        have ended: a run's backends end after it does, and their CPU counts once they have."""
        deadline = time.monotonic() + timeout
        while self.clients() - earlier and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.05)  # from leaving pg_stat_activity to being reaped by the postmaster

    def version(self) -> str:
        row = self._conn.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else "?"

    def settings(self) -> dict[str, str]:
        names = ("shared_buffers", "synchronous_commit", "fsync", "max_wal_size", "work_mem")
        out = {}
        for name in names:
            row = self._conn.execute(f"SHOW {name}").fetchone()
            out[name] = str(row[0]) if row else "?"
        return out

    def drop_schema(self, name: str) -> None:
        from psycopg import sql

        self._conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))

    def reset_schema(self, name: str) -> None:
        from psycopg import sql

        self.drop_schema(name)
        self._conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))

    def tables(self, schema: str) -> list[str]:
        rows = self._conn.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = %s AND table_type = 'BASE TABLE' ORDER BY table_name",
            (schema,),
        ).fetchall()
        return [str(r[0]) for r in rows]

    def count_rows(self, schema: str, tables: Sequence[str] | None = None) -> dict[str, int]:
        from psycopg import sql

        names = list(tables) if tables is not None else self.tables(schema)
        existing = set(self.tables(schema))
        counts: dict[str, int] = {}
        for name in names:
            if name not in existing:
                continue
            query = sql.SQL("SELECT count(*) FROM {}.{}").format(
                sql.Identifier(schema), sql.Identifier(name)
            )
            row = self._conn.execute(query).fetchone()
            counts[name] = int(row[0]) if row else 0
        return counts


# ---- the dataset --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dataset:
    size: int  # requested
    args: tuple[str, ...]  # the simulator's dataset flags (the same for --save and for serving)
    path: Path
    conversations: int  # what the export file actually holds
    range_from: str  # the range the file was exported for (ISO, with offset)
    range_to: str
    file_bytes: int
    json_bytes: int

    @property
    def window_seconds(self) -> int:
        start = datetime.fromisoformat(self.range_from)
        end = datetime.fromisoformat(self.range_to)
        return math.ceil((end - start).total_seconds())


def dataset_args(size: int) -> tuple[str, ...]:
    """Simulator flags for about `size` exported conversations of ~5 KB, one environment.

    1,000 conversations a day; a few per day ("silent" ones) have no end-user interaction and
    are never exported, so per-day is raised until the exported count reaches `size`.
    """
    days = max(1, math.ceil(size / 1000))
    per_day = math.ceil(size / days)
    while per_day - per_day // 40 < math.ceil(size / days):  # synth: n // 40 silent per day
        per_day += 1
    return (
        "--seed=1",
        "--start=2024-03-25",
        f"--days={days}",
        f"--per-day={per_day}",
        "--environments=live",
        "--messages-per-conversation=7",
    )


def simulator_fingerprint() -> str:
    """A hash of the simulator's source files (etl/fakeapi/*.py)."""
    import hashlib

    import etl.fakeapi

    digest = hashlib.blake2b(digest_size=8)
    for source in sorted(Path(etl.fakeapi.__file__).parent.glob("*.py")):
        digest.update(source.name.encode() + b"\0" + source.read_bytes())
    return digest.hexdigest()


def ensure_dataset(size: int, env: Mapping[str, str]) -> Dataset:
    """The export file for `size` under bench/data/, generated once by `etl fake-api --save`."""
    args = dataset_args(size)
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    path = DATA_DIR / f"export-{size}.json.gz"
    stamp = path.with_name(path.name + ".args")
    # Regenerate when the flags or the simulator's code change: the file must hold exactly what
    # the simulator serves to `etl backfill`.
    wanted = f"{' '.join(args)} simulator={simulator_fingerprint()}"
    if not path.exists() or not stamp.exists() or stamp.read_text().strip() != wanted:
        say(f"  generating {path.relative_to(ROOT)} (etl fake-api {' '.join(args)} --save) ...")
        started = time.perf_counter()
        proc = subprocess.run(
            [ETL, "fake-api", *args, "--save", str(path)],
            env=dict(env),
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"etl fake-api --save failed (exit {proc.returncode}):\n"
                f"{tail(proc.stderr or proc.stdout)}"
            )
        stamp.write_text(wanted + "\n")
        say(f"  {proc.stdout.strip()} in {time.perf_counter() - started:.1f} s")
    info, json_bytes = _read_export_summary(path)
    rng = info.get("interpreted_query_range") or [None, None]
    if not (isinstance(rng, list) and len(rng) == 2 and all(isinstance(x, str) for x in rng)):
        raise RuntimeError(f"{path}: query_info has no interpreted_query_range: {info}")
    return Dataset(
        size=size,
        args=args,
        path=path,
        conversations=int(info.get("conversations", 0)),
        range_from=rng[0],
        range_to=rng[1],
        file_bytes=path.stat().st_size,
        json_bytes=json_bytes,
    )


def _read_export_summary(path: Path) -> tuple[dict[str, Any], int]:
    """The file's query_info element, and its decompressed size."""
    import ijson

    with gzip.open(path, "rb") as fh:
        first = next(iter(ijson.items(fh, "item")), None)
    if not isinstance(first, dict) or first.get("type") != "query_info":
        raise RuntimeError(f"{path}: the first element is not a query_info object")
    size = 0
    with gzip.open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            size += len(chunk)
    return first, size


# ---- variants and their results -----------------------------------------------------------------


@dataclass
class Variant:
    key: str
    group: str  # the letter --only selects
    label: str
    project: bool = False
    runs: list[Measurement] = field(default_factory=list)
    conversations: int | None = None
    rows: int | None = None
    row_detail: dict[str, int] = field(default_factory=dict)
    failure: str | None = None
    skipped: str | None = None
    source_bytes: int | None = None  # bytes the project read from its source (HTTP: gzip)
    notes: list[str] = field(default_factory=list)

    @property
    def ok_runs(self) -> list[Measurement]:
        return [m for m in self.runs if m.ok]

    @property
    def failed(self) -> bool:
        return self.failure is not None

    def seconds(self) -> float | None:
        runs = self.ok_runs
        return statistics.median(m.wall_s for m in runs) if runs and not self.failed else None

    def summary(self) -> dict[str, Any]:
        runs = self.ok_runs
        out: dict[str, Any] = {
            "label": self.label,
            "project": self.project,
            "status": "FAILED" if self.failed else "skipped" if self.skipped else "ok",
            "failure": self.failure,
            "skipped": self.skipped,
            "runs": [
                {
                    "wall_s": round(m.wall_s, 3),
                    "peak_rss_mb": round(m.peak_rss_mb, 1),
                    "user_s": round(m.user_s, 3),
                    "sys_s": round(m.sys_s, 3),
                    "returncode": m.returncode,
                    "timed_out": m.timed_out,
                    "loadavg_before": round(m.loadavg_before, 2),
                    "server_cpu_s": None if m.server_cpu_s is None else round(m.server_cpu_s, 3),
                }
                for m in self.runs
            ],
            "conversations": self.conversations,
            "rows": self.rows,
            "row_detail": self.row_detail,
            "source_bytes": self.source_bytes,
            "notes": self.notes,
        }
        if runs and not self.failed:
            walls = [m.wall_s for m in runs]
            rss = [m.peak_rss_mb for m in runs]
            cpu = [m.user_s + m.sys_s for m in runs]
            server = [m.server_cpu_s for m in runs if m.server_cpu_s is not None]
            median = statistics.median(walls)
            out.update(
                seconds_median=round(median, 3),
                seconds_min=round(min(walls), 3),
                seconds_max=round(max(walls), 3),
                cpu_seconds_median=round(statistics.median(cpu), 3),
                server_cpu_seconds_median=round(statistics.median(server), 3) if server else None,
                peak_rss_mb_median=round(statistics.median(rss), 1),
                peak_rss_mb_min=round(min(rss), 1),
                peak_rss_mb_max=round(max(rss), 1),
                conversations_per_s=round(self.conversations / median, 1)
                if self.conversations
                else None,
                rows_per_s=round(self.rows / median, 1) if self.rows else None,
            )
        return out


class Bench:
    """Runs the variants in rounds (a, b, c, e, d per round) so slow drifts hit all alike."""

    def __init__(self, args: argparse.Namespace, url: str) -> None:
        self.args = args
        self.url = url
        self.dsn = libpq_dsn(self.url)
        self.groups = set(args.only) - ({"d"} if args.skip_dlt else set())
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-run-"))
        self.pg = Postgres(self.dsn)
        self.base_env = {k: v for k, v in os.environ.items() if not k.startswith("ETL_")}
        self.variants: dict[str, Variant] = {
            v.key: v
            for v in (
                Variant("a", "a", "a. parse floor (ijson yajl2_c)"),
                Variant("b", "b", "b. load floor (flatten + COPY)"),
                Variant("c_backfill", "c", "c. etl backfill (HTTP, gzip)", project=True),
                Variant("c_load_file", "c", "c. etl load-file", project=True),
                Variant("d_first", "d", "d. dlt first load (merge)"),
                Variant("d_rerun", "d", "d. dlt re-run (merge)"),
                Variant("d_tuned", "d", "d. dlt tuned (2 workers, csv, pages)"),
                Variant("e_rerun", "e", "e. etl backfill re-run", project=True),
            )
        }
        self.scaling: list[dict[str, Any]] = []
        self.scaling_failure: str | None = None
        self.scale_out: dict[int, Variant] = {}
        self.scale_out_dlt: Variant | None = None
        self.views: list[dict[str, Any]] = []

    # -- measured runs --

    def measure(
        self,
        variant: Variant,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        run_label: str = "",
    ) -> Measurement | None:
        if variant.failed:
            return None
        self.pg.quiesce()
        clients = self.pg.clients()
        server_before = self.pg.server_cpu()
        m = run_measured(argv, env=env or self.base_env, cwd=ROOT, timeout=self.args.timeout)
        if server_before is not None:
            self.pg.settle(clients)
            server_after = self.pg.server_cpu()
            if server_after is not None:
                m.server_cpu_s = server_after - server_before
        variant.runs.append(m)
        what = f"  {variant.label}{run_label}"
        if m.ok:
            say(
                f"{what:<52} {m.wall_s:8.2f} s  {m.peak_rss_mb:7.1f} MB  "
                f"cpu {m.user_s + m.sys_s:7.2f} s  server {fmt(m.server_cpu_s, '6.2f')} s"
            )
            return m
        reason = "timed out" if m.timed_out else f"exit {m.returncode}"
        variant.failure = f"{reason}: {tail(m.stderr or m.stdout, 1)}"
        say(f"{what:<52} FAILED ({reason}); stderr tail:")
        say(indent(tail(m.stderr or m.stdout) or "(no output)"))
        return None

    def project_env(self, api_url: str = "") -> dict[str, str]:
        env = {
            **self.base_env,
            "ETL_DATABASE_URL": self.url,
            "ETL_DATABASE_SCHEMA": PROJECT_SCHEMA,
        }
        if api_url:
            env.update(ETL_API_URL=api_url, ETL_API_TOKEN=TOKEN)
        return env

    def migrate(self, variant: Variant, env: Mapping[str, str]) -> bool:
        """A fresh, migrated project schema (not measured)."""
        self.pg.reset_schema(PROJECT_SCHEMA)
        proc = subprocess.run(
            [ETL, "migrate"], env=dict(env), capture_output=True, text=True, check=False
        )
        if proc.returncode == 0:
            return True
        variant.failure = f"etl migrate failed (exit {proc.returncode}): {tail(proc.stderr, 1)}"
        say(f"  {variant.label:<50} FAILED: etl migrate (exit {proc.returncode}):")
        say(indent(tail(proc.stderr or proc.stdout)))
        return False

    def backfill_argv(self, data: Dataset) -> list[str]:
        window = self.args.window or f"{data.window_seconds}s"  # one window: the whole range
        return [
            ETL,
            "backfill",
            "--from",
            data.range_from,
            "--to",
            data.range_to,
            "--window",
            window,
        ]

    # -- the variants --

    def run_floors(self, data: Dataset, rnd: int) -> None:
        n = f" #{rnd + 1}"
        if "a" in self.groups:
            v = self.variants["a"]
            m = self.measure(
                v, [PYTHON, str(BENCH / "floors.py"), "parse", str(data.path)], None, n
            )
            if m and (out := last_json_line(m.stdout)):
                v.conversations = int(out["conversations"])
        if "b" in self.groups:
            v = self.variants["b"]
            if not v.failed:
                self.pg.reset_schema(FLOOR_SCHEMA)
            argv = [PYTHON, str(BENCH / "floors.py"), "load", str(data.path)]
            m = self.measure(v, [*argv, "--dsn", self.dsn, "--schema", FLOOR_SCHEMA], None, n)
            if m:
                v.row_detail = self.pg.count_rows(FLOOR_SCHEMA, FACT_TABLES)
                v.rows = sum(v.row_detail.values())
                v.conversations = v.row_detail.get("conversations")

    def run_project(self, data: Dataset, api_url: str | None, rnd: int) -> None:
        n = f" #{rnd + 1}"
        if api_url is not None and ("c" in self.groups or "e" in self.groups):
            env = self.project_env(api_url)
            first, rerun = self.variants["c_backfill"], self.variants["e_rerun"]
            if not first.failed and self.migrate(first, env):
                m = self.measure(first, self.backfill_argv(data), env, n)
                if m:
                    self._count_project(first, env)
                    if "e" in self.groups:
                        m2 = self.measure(rerun, self.backfill_argv(data), env, n)
                        if m2:
                            self._count_project(rerun, env)
            if first.failed and "e" in self.groups and not rerun.runs:
                rerun.skipped = "needs c (etl backfill) to have loaded the data"
        if "c" in self.groups:
            v = self.variants["c_load_file"]
            env = self.project_env()
            if not v.failed and self.migrate(v, env):
                m = self.measure(v, [ETL, "load-file", str(data.path)], env, n)
                if m:
                    self._count_project(v, env)

    def _count_project(self, v: Variant, env: Mapping[str, str]) -> None:
        counts = self.pg.count_rows(PROJECT_SCHEMA)
        v.row_detail = {k: counts[k] for k in sorted(counts) if k in FACT_TABLES}
        v.row_detail.update(
            {f"({k})": c for k, c in sorted(counts.items()) if k in ("intents", "actions")}
        )
        v.rows = sum(counts.get(t, 0) for t in FACT_TABLES)
        v.conversations = counts.get("conversations")
        status = subprocess.run(
            [ETL, "status", "--json", "--runs", "1"],
            env=dict(env),
            capture_output=True,
            text=True,
            check=False,
        )
        if status.returncode == 0:
            try:
                runs = json.loads(status.stdout).get("runs") or []
            except ValueError:
                runs = []
            if runs and isinstance(runs[0].get("bytes"), int):
                v.source_bytes = runs[0]["bytes"]

    def run_dlt(self, data: Dataset, rnd: int) -> None:
        if "d" not in self.groups or rnd >= self.args.dlt_repeat:
            return
        n = f" #{rnd + 1}"
        script = str(BENCH / "dlt_variant.py")
        for first_key, rerun_key, schema, mode in (
            ("d_first", "d_rerun", DLT_SCHEMA, "--default"),
            ("d_tuned", None, DLT_TUNED_SCHEMA, "--tuned"),
        ):
            first = self.variants[first_key]
            if first.failed:
                continue
            pipelines = self.tmp / f"dlt-{schema}"
            shutil.rmtree(pipelines, ignore_errors=True)
            self.pg.drop_schema(schema)
            self.pg.drop_schema(f"{schema}_staging")
            argv = [
                PYTHON,
                script,
                str(data.path),
                mode,
                "--schema",
                schema,
                "--pipelines-dir",
                str(pipelines),
                "--dsn",
                self.dsn,
            ]
            m = self.measure(first, argv, None, n)
            if not m:
                if rerun_key:
                    self.variants[rerun_key].skipped = "needs the dlt first load"
                continue
            self._count_dlt(first, schema, m)
            if rerun_key:
                rerun = self.variants[rerun_key]
                m2 = self.measure(rerun, argv, None, n)
                if m2:
                    self._count_dlt(rerun, schema, m2)

    def _count_dlt(self, v: Variant, schema: str, m: Measurement) -> None:
        counts = self.pg.count_rows(schema)
        v.row_detail = {k: c for k, c in counts.items() if not k.startswith("_dlt")}
        v.rows = sum(v.row_detail.values())
        v.conversations = v.row_detail.get("conversations")
        out = last_json_line(m.stdout)
        if out and not v.notes:
            v.notes = [f"{len(out.get('tables', []))} data tables (dlt {out.get('dlt_version')})"]

    def run_scaling(self) -> None:
        base = self.args.scaling_base
        say(f"\nMemory scaling: etl backfill, one window of 1x, 4x, 16x {base:,} conversations")
        for factor in (1, 4, 16):
            size = base * factor
            try:
                data = ensure_dataset(size, self.base_env)
                with simulator(data, self.base_env) as api_url:
                    env = self.project_env(api_url)
                    v = Variant(f"scaling_{factor}x", "s", f"scaling {factor:>2}x ({size:,})", True)
                    if not self.migrate(v, env):
                        raise RuntimeError(v.failure or "etl migrate failed")
                    m = self.measure(v, self.backfill_argv(data), env)
                    if m is None:
                        raise RuntimeError(v.failure or "etl backfill failed")
                    counts = self.pg.count_rows(PROJECT_SCHEMA, FACT_TABLES)
            except RuntimeError as exc:
                self.scaling_failure = f"{factor}x: {exc}"
                say(f"  scaling stopped at {factor}x: {tail(str(exc), 5)}")
                return
            self.scaling.append(
                {
                    "factor": factor,
                    "conversations": counts.get("conversations", 0),
                    "rows": sum(counts.values()),
                    "seconds": round(m.wall_s, 3),
                    "peak_rss_mb": round(m.peak_rss_mb, 1),
                }
            )

    def run_scale_out(self) -> None:
        """A month of daily windows against a simulator paced like a real server (issue 13):
        `etl backfill --workers 1, 4, 8`, each into an emptied schema, each run --repeat times."""
        args = self.args
        simulator_args = (
            "--seed=2",
            f"--start={SCALE_OUT_START}",
            f"--days={SCALE_OUT_DAYS}",
            f"--per-day={SCALE_OUT_PER_DAY}",
            "--environments=live",
            *SCALE_OUT_SERVER,
        )
        end = date.fromisoformat(SCALE_OUT_START) + timedelta(days=SCALE_OUT_DAYS)
        say(
            f"\nScale-out: etl backfill, {SCALE_OUT_DAYS} daily windows of ~{SCALE_OUT_PER_DAY} "
            f"conversations, against etl fake-api {' '.join(SCALE_OUT_SERVER)}"
        )
        with fake_api_process(
            *simulator_args, token=TOKEN, env=self.base_env, start_timeout=300.0
        ) as api_url:
            env = self.project_env(api_url)
            for rnd in range(args.repeat):
                for workers in SCALE_OUT_WORKERS:
                    v = self.scale_out.setdefault(
                        workers,
                        Variant(f"scale_out_{workers}", "s", f"--workers {workers}", True),
                    )
                    if v.failed or not self.migrate(v, env):
                        continue
                    argv = [
                        ETL, "backfill", "--from", SCALE_OUT_START, "--to", end.isoformat(),
                        "--window", "1d", "--workers", str(workers),
                    ]  # fmt: skip
                    if self.measure(v, argv, env, f" #{rnd + 1}"):
                        self._count_project(v, env)
                if not args.skip_dlt and rnd < args.dlt_repeat and _have_dlt():
                    self._scale_out_dlt(api_url, end, rnd)

    def _scale_out_dlt(self, api_url: str, end: date, rnd: int) -> None:
        """dlt against the same server: one request per day, one after the other."""
        v = self.scale_out_dlt = self.scale_out_dlt or Variant(
            "scale_out_dlt", "d", "dlt (one request at a time, merge)"
        )
        if v.failed:
            return
        pipelines = self.tmp / "dlt-scale-out"
        shutil.rmtree(pipelines, ignore_errors=True)
        self.pg.drop_schema(DLT_SCHEMA)
        self.pg.drop_schema(f"{DLT_SCHEMA}_staging")
        argv = [
            PYTHON, str(BENCH / "dlt_variant.py"), "--default",
            "--api", api_url, "--token", TOKEN, "--from", SCALE_OUT_START, "--to", end.isoformat(),
            "--schema", DLT_SCHEMA, "--pipelines-dir", str(pipelines), "--dsn", self.dsn,
        ]  # fmt: skip
        m = self.measure(v, argv, None, f" #{rnd + 1}")
        if m:
            self._count_dlt(v, DLT_SCHEMA, m)

    # -- the whole thing --

    def warm_up(self) -> None:
        """Compile bytecode and fill the page cache for every program, unmeasured."""
        cmds = [
            # Written even under PYTHONDONTWRITEBYTECODE: else every `etl` run compiles the
            # project's modules again (~0.03 s), as no installed package does.
            [PYTHON, "-m", "compileall", "-q", str(ROOT / "etl")],
            [PYTHON, "-c", "import ijson, psycopg"],
            [ETL, "--version"],
        ]
        if "d" in self.groups:
            cmds.append([PYTHON, "-c", "import dlt, dlt.destinations.impl.postgres.postgres"])
        for cmd in cmds:
            subprocess.run(cmd, env=self.base_env, capture_output=True, check=False)

    def cleanup(self) -> None:
        if self.args.keep_data:
            say(f"\n--keep-data: schemas {', '.join(OWN_SCHEMAS)} and {self.tmp} are kept")
        else:
            for schema in OWN_SCHEMAS:
                try:
                    self.pg.drop_schema(schema)
                except Exception as exc:  # noqa: BLE001 - cleanup must not mask the results
                    say(f"  could not drop schema {schema}: {exc}")
            shutil.rmtree(self.tmp, ignore_errors=True)
        self.pg.close()


def _have_dlt() -> bool:
    """dlt is the bench extra's (make bench installs it)."""
    import importlib.util

    return importlib.util.find_spec("dlt") is not None


def simulator(data: Dataset, env: Mapping[str, str]) -> AbstractContextManager[str]:
    """`etl fake-api` serving the dataset's conversations on a free loopback port."""
    return fake_api_process(*data.args, token=TOKEN, env=env, start_timeout=300.0)


@contextmanager
def maybe_simulator(enabled: bool, data: Dataset, env: Mapping[str, str]) -> Iterator[str | None]:
    if not enabled:
        yield None
        return
    with simulator(data, env) as api_url:
        yield api_url


# ---- machine, ratios, report --------------------------------------------------------------------


def machine_info(pg: Postgres) -> dict[str, Any]:
    cpu_model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_mb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_mb = int(line.split()[1]) // 1024
    except OSError:
        pass
    versions: dict[str, str] = {}
    from importlib import metadata

    for dist in ("convo-etl", "dlt", "ijson", "psycopg", "sqlalchemy"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "-"
    return {
        "hostname": platform.node(),
        "nproc": usable_cpus(),
        "cpu_model": cpu_model,
        "memory_mb": mem_mb,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgresql": pg.version(),
        "postgresql_settings": pg.settings(),
        "packages": versions,
        "loadavg_at_start": list(os.getloadavg()),
    }


def git_info() -> dict[str, Any]:
    def git(*args: str) -> str:
        proc = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return proc.stdout.strip() if proc.returncode == 0 else ""

    return {
        "commit": git("rev-parse", "HEAD"),
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
    }


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def build_checks(bench: Bench) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The ratios, and each target with its measured value and PASS/MISS (or n/a)."""
    s = {key: v.seconds() for key, v in bench.variants.items()}
    backfill, load_file, rerun = s["c_backfill"], s["c_load_file"], s["e_rerun"]
    ratios = {
        "efficiency_floor_over_backfill": ratio(s["b"], backfill),
        "efficiency_floor_over_load_file": ratio(s["b"], load_file),
        "speedup_dlt_first_over_backfill": ratio(s["d_first"], backfill),
        "speedup_dlt_first_over_load_file": ratio(s["d_first"], load_file),
        "speedup_dlt_rerun_over_backfill_rerun": ratio(s["d_rerun"], rerun),
        "speedup_dlt_tuned_over_backfill": ratio(s["d_tuned"], backfill),
        "speedup_dlt_tuned_over_load_file": ratio(s["d_tuned"], load_file),
        "rerun_over_first_backfill": ratio(rerun, backfill),
        "parse_floor_over_load_floor": ratio(s["a"], s["b"]),
    }
    backfill_runs = bench.variants["c_backfill"].ok_runs
    peak = max((m.peak_rss_mb for m in backfill_runs), default=None)
    growth = None
    if len(bench.scaling) == 3:
        growth = bench.scaling[2]["peak_rss_mb"] / bench.scaling[0]["peak_rss_mb"] - 1.0
    ratios["rss_growth_1x_to_16x"] = growth
    out = {workers: v.seconds() for workers, v in bench.scale_out.items()}
    ratios["scale_out_speedup_4_workers"] = ratio(out.get(1), out.get(4))
    ratios["scale_out_8_over_4_workers_time"] = ratio(out.get(8), out.get(4))

    # (what, value, goal as shown, the test): the goal is met when `test(value)` is true.
    targets: list[tuple[str, float | None, str, Callable[[float], bool]]] = [
        ("efficiency: load floor / etl backfill", ratios["efficiency_floor_over_backfill"],
         f">= {EFFICIENCY_MIN}", lambda x: x >= EFFICIENCY_MIN),
        ("efficiency: load floor / etl load-file", ratios["efficiency_floor_over_load_file"],
         f">= {EFFICIENCY_MIN}", lambda x: x >= EFFICIENCY_MIN),
        ("speed-up: dlt first load / etl backfill", ratios["speedup_dlt_first_over_backfill"],
         f">= {SPEEDUP_DLT_MIN}x", lambda x: x >= SPEEDUP_DLT_MIN),
        ("speed-up: dlt first load / etl load-file", ratios["speedup_dlt_first_over_load_file"],
         f">= {SPEEDUP_DLT_MIN}x", lambda x: x >= SPEEDUP_DLT_MIN),
        ("speed-up: dlt re-run / etl backfill re-run",
         ratios["speedup_dlt_rerun_over_backfill_rerun"],
         f">= {SPEEDUP_DLT_MIN}x", lambda x: x >= SPEEDUP_DLT_MIN),
        ("speed-up: tuned dlt / etl backfill", ratios["speedup_dlt_tuned_over_backfill"],
         f">= {SPEEDUP_DLT_TUNED_MIN}x", lambda x: x >= SPEEDUP_DLT_TUNED_MIN),
        ("speed-up: tuned dlt / etl load-file", ratios["speedup_dlt_tuned_over_load_file"],
         f">= {SPEEDUP_DLT_TUNED_MIN}x", lambda x: x >= SPEEDUP_DLT_TUNED_MIN),
        ("peak RSS of etl backfill (max of runs), MB", peak,
         f"<= {RSS_MAX_MB:.0f}", lambda x: x <= RSS_MAX_MB),
        ("peak RSS growth of etl backfill, 1x -> 16x", growth,
         f"< {RSS_GROWTH_MAX:.0%}", lambda x: x < RSS_GROWTH_MAX),
        ("re-run (e) / first load (c backfill), time", ratios["rerun_over_first_backfill"],
         "<= 1.0", lambda x: x <= 1.0),
        ("scale-out: --workers 1 / --workers 4, time", ratios["scale_out_speedup_4_workers"],
         f">= {SCALE_OUT_SPEEDUP_MIN}x", lambda x: x >= SCALE_OUT_SPEEDUP_MIN),
        ("scale-out: --workers 8 / --workers 4, time", ratios["scale_out_8_over_4_workers_time"],
         "<= 1.0", lambda x: x <= 1.0),
    ]  # fmt: skip
    checks = [
        {
            "target": what,
            "value": value,
            "goal": goal,
            "verdict": "n/a" if value is None else "PASS" if test(value) else "MISS",
        }
        for what, value, goal, test in targets
    ]
    return ratios, checks


def fmt(value: float | None, spec: str = ",.0f", missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity), else the machine's."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def cpu_budget(bench: Bench) -> list[dict[str, Any]]:
    """What the load floor and the project's first loads cost in CPU, their own and the
    server's (medians), or nothing when the server's CPU cannot be read. With as many busy
    processes as cores, a run takes at least its CPU over the cores, which caps a first load's
    efficiency against the floor whatever runs in parallel (`efficiency_at_most`)."""
    cores = usable_cpus()
    floor_s = bench.variants["b"].seconds()
    budget: list[dict[str, Any]] = []
    for key in ("b", "c_load_file", "c_backfill"):
        v = bench.variants[key]
        if v.group not in bench.groups or v.failed or not v.ok_runs:
            continue
        s = v.summary()
        own, server = s["cpu_seconds_median"], s["server_cpu_seconds_median"]
        if server is None:
            return []
        least = (own + server) / cores
        budget.append(
            {
                "variant": key,
                "label": v.label,
                "own_cpu_s": own,
                "server_cpu_s": server,
                "cores": cores,
                "least_seconds": round(least, 3),
                "efficiency_at_most": round(floor_s / least, 4)
                if v.project and floor_s and least > 0
                else None,
            }
        )
    return budget


def say_cpu_budget(budget: Sequence[Mapping[str, Any]]) -> None:
    if not budget:
        return
    say("CPU per run, its own + the server's (medians; the simulator's not counted):")
    for row in budget:
        own, server = row["own_cpu_s"], row["server_cpu_s"]
        line = (
            f"  {row['label']:<40} {own:6.2f} + {server:5.2f} = {own + server:6.2f} CPU-s, "
            f"at least {row['least_seconds']:5.2f} s on {row['cores']} CPU(s)"
        )
        if row["efficiency_at_most"] is not None:
            line += f"; efficiency at most {row['efficiency_at_most']:.2f}"
        say(line)


def print_report(
    bench: Bench,
    data: Dataset,
    ratios: Mapping[str, Any],
    checks: Any,
    budget: Sequence[Mapping[str, Any]],
) -> None:
    say()
    header = (
        f"{'variant':<40} {'runs':>4}  {'seconds':>8} {'[min-max]':>15}  {'conv/s':>8} "
        f"{'rows':>9} {'rows/s':>9}  {'peak RSS MB':>11} {'[min-max]':>13}  {'cpu s':>7} "
        f"{'server s':>8}"
    )
    say(header)
    say("-" * len(header))
    for v in bench.variants.values():
        if v.group not in bench.groups:
            continue
        s = v.summary()
        if v.failed or (v.skipped and not v.ok_runs):
            state = "FAILED" if v.failed else "skipped"
            why = " ".join((v.failure or v.skipped or "").split())
            say(f"{v.label:<40} {len(v.runs):>4}  {state:>8}  {why}"[:200])
            continue
        if not v.ok_runs:
            continue
        spread = f"[{s['seconds_min']:.2f}-{s['seconds_max']:.2f}]"
        rss = f"[{s['peak_rss_mb_min']:.0f}-{s['peak_rss_mb_max']:.0f}]"
        say(
            f"{v.label:<40} {len(v.ok_runs):>4}  {s['seconds_median']:>8.2f} {spread:>15}  "
            f"{fmt(s['conversations_per_s']):>8} {fmt(v.rows):>9} {fmt(s['rows_per_s']):>9}  "
            f"{s['peak_rss_mb_median']:>11.1f} {rss:>13}  {s['cpu_seconds_median']:>7.2f} "
            f"{fmt(s['server_cpu_seconds_median'], '8.2f'):>8}"
        )
    say(
        "(cpu s: the measured process's own user+sys CPU, its children's included; server s: "
        "PostgreSQL's processes during the run, when it runs here; rows: the five fact tables, "
        "all data tables for dlt)"
    )
    say_cpu_budget(budget)
    received = bench.variants["c_backfill"].source_bytes
    if received:
        say(
            f"etl backfill received {received / 1e6:,.1f} MB over HTTP for "
            f"{data.json_bytes / 1e6:,.1f} MB of JSON (gzip: {data.json_bytes / received:.1f}x)"
        )
    counts = {v.label: v.conversations for v in bench.variants.values() if v.conversations}
    odd = {label: n for label, n in counts.items() if n != data.conversations}
    if odd:
        say(f"\nWARNING: conversation counts differ from the file's {data.conversations:,}: {odd}")
    if bench.scaling:
        say("\nMemory scaling (etl backfill, one window):")
        for row in bench.scaling:
            say(
                f"  {row['factor']:>2}x  {row['conversations']:>8,} conversations  "
                f"{row['seconds']:>8.2f} s  peak RSS {row['peak_rss_mb']:>7.1f} MB"
            )
    if bench.scaling_failure:
        say(f"  scaling FAILED: {bench.scaling_failure}"[:300])
    if bench.scale_out:
        say(
            f"\nScale-out (etl backfill, {SCALE_OUT_DAYS} daily windows, simulator "
            f"{' '.join(SCALE_OUT_SERVER)}):"
        )
        for workers, v in sorted(bench.scale_out.items()):
            seconds = v.seconds()
            shown = f"{seconds:8.2f} s" if seconds is not None else f"FAILED: {v.failure}"[:200]
            say(
                f"  --workers {workers}  {v.conversations or 0:>8,} conversations  "
                f"{v.rows or 0:>9,} rows  {shown}"
            )
        dlt_row = bench.scale_out_dlt
        if dlt_row is not None:
            seconds = dlt_row.seconds()
            shown = f"{seconds:8.2f} s" if seconds is not None else f"FAILED: {dlt_row.failure}"
            say(f"  dlt          {dlt_row.conversations or 0:>8,} conversations  {shown}"[:200])
        counts = {v.conversations for v in bench.scale_out.values() if v.conversations}
        if len(counts) > 1:
            say(f"  WARNING: the worker counts loaded different numbers of conversations: {counts}")
    say("\nRatios and targets (medians; not asserted):")
    for c in checks:
        value = c["value"]
        if value is None:
            shown = "-"
        elif "RSS of" in c["target"]:
            shown = f"{value:.1f}"
        elif "growth" in c["target"]:
            shown = f"{value:+.1%}"
        else:
            shown = f"{value:.2f}"
        say(f"  {c['target']:<46} {shown:>8}   goal {c['goal']:<8} {c['verdict']}")


# ---- main ---------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark convo-etl against a parse floor, a load floor and dlt.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--size", type=int, default=20_000, help="conversations in the dataset")
    parser.add_argument("--repeat", type=int, default=3, help="measured runs per variant")
    parser.add_argument(
        "--dlt-repeat",
        type=int,
        default=1,
        help="measured runs per dlt variant (each takes minutes; capped at --repeat)",
    )
    parser.add_argument(
        "--only",
        type=lambda s: {x.strip().lower() for x in s.split(",") if x.strip()},
        default={"a", "b", "c", "d", "e"},
        help="comma-separated variant letters to run (a,b,c,d,e)",
    )
    parser.add_argument("--skip-dlt", action="store_true", help="leave out the dlt variants (d)")
    parser.add_argument(
        "--scaling",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="memory-scaling run of etl backfill at 1x, 4x, 16x --scaling-base",
    )
    parser.add_argument("--scaling-base", type=int, default=1000, help="1x of the scaling run")
    parser.add_argument(
        "--scale-out",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="a month of daily windows with --workers 1, 4, 8 against a paced simulator",
    )
    parser.add_argument(
        "--views",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the metric views' dashboard queries over a year of data (bench/views.py)",
    )
    parser.add_argument(
        "--window", help="etl backfill window (default: one window over the whole dataset)"
    )
    parser.add_argument(
        "--keep-data", action="store_true", help="keep the bench schemas and dlt dirs at the end"
    )
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per measured run")
    parser.add_argument(
        "--output", type=Path, default=RESULTS_DIR / "latest.json", help="results JSON"
    )
    args = parser.parse_args(argv)
    unknown = args.only - set("abcde")
    if unknown:
        parser.error(f"--only: unknown variant(s) {', '.join(sorted(unknown))}; use a,b,c,d,e")
    if args.size < 1 or args.repeat < 1 or args.scaling_base < 1:
        parser.error("--size, --repeat and --scaling-base must be at least 1")
    args.dlt_repeat = max(1, min(args.dlt_repeat, args.repeat))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with database_url() as url:
        return run(args, url)


def run(args: argparse.Namespace, url: str) -> int:
    started = time.perf_counter()
    bench = Bench(args, url)
    try:
        machine = machine_info(bench.pg)
        say(
            f"Machine: {machine['nproc']} CPU(s), {machine['cpu_model']}, "
            f"{machine['memory_mb']:,} MB RAM, kernel {machine['kernel']}, "
            f"Python {machine['python']}, PostgreSQL {machine['postgresql']}"
        )
        say(f"Packages: {', '.join(f'{k} {v}' for k, v in machine['packages'].items())}")
        load1 = machine["loadavg_at_start"][0]
        if load1 > 0.5:
            say(
                f"WARNING: load average {load1:.2f}: other work on this machine makes timings noisy"
            )
        say(f"Database: {bench.dsn} (schemas {', '.join(OWN_SCHEMAS)})")
        say("\nDataset:")
        data = ensure_dataset(args.size, bench.base_env)
        say(
            f"  {data.path.relative_to(ROOT)}: {data.conversations:,} conversations, "
            f"{data.json_bytes / 1e6:,.1f} MB JSON "
            f"({data.json_bytes / max(1, data.conversations):,.0f} B each), "
            f"{data.file_bytes / 1e6:,.1f} MB gzip; range {data.range_from} .. "
            f"{data.range_to}"
        )
        bench.warm_up()
        need_server = bool({"c", "e"} & bench.groups)
        say(f"\nRuns (--repeat {args.repeat}, dlt {args.dlt_repeat}):")
        with maybe_simulator(need_server, data, bench.base_env) as api_url:
            if api_url is not None:
                say(f"  simulator serving the same dataset at {api_url}")
            for rnd in range(args.repeat):
                bench.run_floors(data, rnd)
                bench.run_project(data, api_url, rnd)
                bench.run_dlt(data, rnd)
        if args.scaling and ({"c", "e"} & bench.groups):
            bench.run_scaling()
        if args.scale_out:
            bench.run_scale_out()
        ratios, checks = build_checks(bench)
        budget = cpu_budget(bench)
        print_report(bench, data, ratios, checks, budget)
        views_ok = True
        if args.views:
            views_ok, bench.views = views.run(url, keep=args.keep_data)
        elapsed = time.perf_counter() - started
        write_results(args, bench, data, machine, ratios, checks, budget, elapsed)
        say(f"\nResults: {args.output} ({elapsed / 60:.1f} min in all)")
    finally:
        bench.cleanup()
    project_failed = any(
        v.failed for v in (*bench.variants.values(), *bench.scale_out.values()) if v.project
    )
    return 1 if project_failed or bench.scaling_failure or not views_ok else 0


def write_results(
    args: argparse.Namespace,
    bench: Bench,
    data: Dataset,
    machine: Mapping[str, Any],
    ratios: Mapping[str, Any],
    checks: Any,
    budget: Sequence[Mapping[str, Any]],
    elapsed: float,
) -> None:
    result = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": git_info(),
        "machine": machine,
        "params": {
            "size": args.size,
            "repeat": args.repeat,
            "dlt_repeat": args.dlt_repeat,
            "only": sorted(bench.groups),
            "window": args.window or f"{data.window_seconds}s (one window)",
            "scaling_base": args.scaling_base if args.scaling else None,
            "database": bench.dsn,
        },
        "dataset": {
            "file": str(data.path.relative_to(ROOT)),
            "simulator_args": list(data.args),
            "conversations": data.conversations,
            "json_bytes": data.json_bytes,
            "gzip_bytes": data.file_bytes,
            "range": [data.range_from, data.range_to],
        },
        "variants": {
            key: v.summary() for key, v in bench.variants.items() if v.group in bench.groups
        },
        "ratios": {k: (round(v, 4) if v is not None else None) for k, v in ratios.items()},
        "targets": checks,
        "cpu_budget": list(budget),
        "scaling": bench.scaling,
        "scaling_failure": bench.scaling_failure,
        "scale_out": {str(k): v.summary() for k, v in sorted(bench.scale_out.items())},
        "scale_out_dlt": bench.scale_out_dlt.summary() if bench.scale_out_dlt else None,
        "views": bench.views,
        "elapsed_s": round(elapsed, 1),
        "loadavg_at_end": list(os.getloadavg()),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_name(args.output.name + ".part")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(args.output)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    shutil.copyfile(args.output, args.output.with_name(f"run-{stamp}.json"))


if __name__ == "__main__":
    sys.exit(main())
