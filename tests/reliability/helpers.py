"""The reliability suite's toolkit: one site URL whose faults can be swapped, runs of the real
`etl` command whose every output is kept for the secrets check, paused runs to kill, snapshots.

A scenario has three parts (see README "What happens when things fail"):

1. the faulty run: its exit code and the error message, which must name the cause and the window;
2. the warehouse right after it: the tables and watermark exactly as before the failed window;
3. a re-run without the fault: tables identical, row by row, to a clean run's (`clean_reference`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import text

from etl.windows import Window, parse_instant, parse_zone
from tests.conftest import SIM_SECRET, SIM_TOKEN, TestWarehouse, dump_tables
from tests.pipeline.cli_helpers import Result, write_config
from tests.reliability.launcher import Child, Launcher

OSLO = parse_zone("Europe/Oslo")
START, MIDDLE, UNTIL = "2024-03-28", "2024-03-29", "2024-03-30"
# The two windows every stream scenario loads: the first is committed before the fault,
# the second is the one that fails.
W1, W2 = (
    Window(parse_instant(a, OSLO).astimezone(UTC), parse_instant(b, OSLO).astimezone(UTC))
    for a, b in ((START, MIDDLE), (MIDDLE, UNTIL))
)
MIDDLE_UTC = W1.end.astimezone(UTC).isoformat()
UNTIL_UTC = W2.end.astimezone(UTC).isoformat()

# Trust authentication ignores it, so every PostgreSQL URL of this suite can carry a password
# that must never show up anywhere.
DB_PASSWORD = "Wh-Pa55-word-7731-never-print"
SECRETS = (SIM_TOKEN, SIM_SECRET, DB_PASSWORD)

# Every output of every `etl` process this suite starts; checked for secrets after each test.
OUTPUTS: list[str] = []


def config(tmp_path: Path, **sections: dict[str, Any]) -> Path:
    """Small windows, small batches (so a failed window has written rows to roll back), fast
    retries and short timeouts; any section can be overridden or extended."""
    base: dict[str, dict[str, Any]] = {
        "pipeline": {"start": START, "window": "1d", "lag": "2h", "timezone": "Europe/Oslo"},
        "warehouse": {"batch_size": 5},
        "retry": {"initial_wait": 0.05, "max_wait": 5, "max_attempts": 2, "max_total_wait": "30s"},
        "api": {"connect_timeout": 1.0, "read_timeout": 1.0},
    }
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    return write_config(tmp_path, **base)


class Site:
    """The vendor site at one URL (hence one watermark), restarted with different faults."""

    def __init__(self, make_sim: Any) -> None:
        self._make_sim = make_sim
        self.api: Any = None
        self.port = 0

    def serve(self, **options: Any) -> Any:
        if self.api is not None:
            self.api.stop()
        self.api = self._make_sim(port=self.port, **options)
        self.port = self.api.port
        return self.api

    @property
    def url(self) -> str:
        return str(self.api.url)


_launcher: Launcher | None = None


def launcher() -> Launcher:
    global _launcher
    if _launcher is None:
        _launcher = Launcher()
    return _launcher


def close_launcher() -> None:
    global _launcher
    if _launcher is not None:
        _launcher.close()
        _launcher = None


def etl_env(
    wh: TestWarehouse, site: Site | None = None, extra_env: dict[str, str] | None = None
) -> dict[str, str]:
    """The environment of an `etl` process: this one's minus ETL_*, plus warehouse and site."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETL_")}
    env.update(wh.env())
    if site is not None:
        env.update(ETL_API_URL=site.url, ETL_API_TOKEN=SIM_TOKEN)
    env.update(extra_env or {})
    return env


def start(
    *args: str,
    wh: TestWarehouse,
    site: Site | None = None,
    config: Path | None = None,
    extra_env: dict[str, str] | None = None,
) -> Child:
    """Start `etl [--config C] -v --log-format json <args>` (see launcher.py) without waiting."""
    argv = ["--config", str(config)] if config is not None else []
    argv += ["-v", "--log-format", "json", *args]
    return launcher().start(argv, etl_env(wh, site, extra_env))


def wait_for_output(child: Child, text: str, *, timeout: float, times: int = 1) -> None:
    """Return once `text` appears `times` times in the process's stderr; fail if it exits
    first or does not within `timeout` seconds (a deadline, not a measurement)."""
    deadline = time.monotonic() + timeout
    while child.stderr().count(text) < times:
        if child.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"etl never said {text!r} {times} time(s):\n{child.stderr()}")
        time.sleep(0.05)


def finish(child: Child, timeout: float = 120) -> Result:
    """Wait for the process; its output is kept for the secrets check."""
    try:
        code = child.wait(timeout)
    except subprocess.TimeoutExpired:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        raise AssertionError(f"etl did not finish within {timeout}s:\n{child.stderr()}") from None
    result = Result(code, child.stdout(), child.stderr())
    OUTPUTS.append(result.output)
    return result


def run(
    *args: str,
    wh: TestWarehouse,
    site: Site | None = None,
    config: Path | None = None,
    extra_env: dict[str, str] | None = None,
    timeout: float = 120,
) -> Result:
    """`etl -v --log-format json <args>`: the most verbose output, recorded for the secrets check."""
    child = start(*args, wh=wh, site=site, config=config, extra_env=extra_env)
    return finish(child, timeout)


def records(result: Result | str) -> list[dict[str, Any]]:
    """The JSON log records of a run (stderr lines that are not JSON come back as `raw`)."""
    stderr = result if isinstance(result, str) else result.stderr
    out: list[dict[str, Any]] = []
    for line in stderr.splitlines():
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except ValueError:
            out.append({"level": "raw", "message": line})
    return out


def error_of(result: Result | str) -> str:
    """The final error message (the last error record)."""
    errors = [r["message"] for r in records(result) if r.get("level") == "error"]
    assert errors, f"no error record in:\n{result if isinstance(result, str) else result.output}"
    return errors[-1]


def warnings_of(result: Result | str) -> list[str]:
    return [r["message"] for r in records(result) if r.get("level") == "warning"]


def preload(wh: TestWarehouse, site: Site, config: Path, until: str = MIDDLE) -> None:
    """Load the windows up to `until` in-process (set-up, not the scenario: it saves a process)."""
    from etl.config import load_settings
    from etl.pipeline.runner import Pipeline

    env = {**wh.env(), "ETL_API_URL": site.url, "ETL_API_TOKEN": SIM_TOKEN}
    settings = load_settings(config, env=env, overrides={"warehouse.batch_size": 1000})
    pipeline = Pipeline(settings, command="run")
    try:
        pipeline.check_schema()  # as the CLI does: it records the reporting zone
        pipeline.run(pipeline.plan_run(parse_instant(until, OSLO)))
    finally:
        pipeline.close()


def query(wh: TestWarehouse, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    engine = wh.engine()
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql), params)]
    finally:
        engine.dispose()


def watermark(wh: TestWarehouse) -> str | None:
    rows = query(wh, f"SELECT watermark FROM {wh.table('etl_state')}")
    assert len(rows) <= 1, rows
    if not rows or rows[0][0] is None:
        return None
    value = rows[0][0]
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC).isoformat()


def runs(wh: TestWarehouse) -> list[tuple[str, str | None, str]]:
    """`etl_runs` as (outcome, error, window start) in order."""
    rows = query(wh, f"SELECT outcome, error, window_start FROM {wh.table('etl_runs')} ORDER BY id")
    return [(r[0], r[1], str(r[2])) for r in rows]


@dataclass(frozen=True)
class Snapshot:
    """What a reader of the warehouse sees: every data table's rows, and the watermark."""

    tables: dict[str, list[tuple[Any, ...]]]
    watermark: str | None

    @property
    def conversations(self) -> int:
        return len(self.tables["conversations"])


def snapshot(wh: TestWarehouse) -> Snapshot:
    return Snapshot(dump_tables(wh), watermark(wh))


def assert_same(actual: Snapshot, expected: Snapshot) -> None:
    """Row by row; on failure, say which table differs instead of printing thousands of rows."""
    assert actual.watermark == expected.watermark
    for name, rows in expected.tables.items():
        got = actual.tables[name]
        if got != rows:
            missing = [r for r in rows if r not in got][:3]
            extra = [r for r in got if r not in rows][:3]
            raise AssertionError(
                f"table {name}: {len(got)} rows, expected {len(rows)}; "
                f"missing e.g. {missing}; unexpected e.g. {extra}"
            )


# -- processes paused at a known point -----------------------------------------------------------


class Paused:
    """An `etl` process started with ETL_TEST_PAUSE_AT, to be stopped at that point."""

    def __init__(self, child: Child, point: str, resume_file: Path) -> None:
        self.child = child
        self.point = point
        self.result: Result | None = None
        self._resume_file = resume_file

    @property
    def pid(self) -> int:
        return self.child.pid

    def wait_paused(self, timeout: float = 30) -> Paused:
        marker = f"ETL-PAUSED {self.point} "
        deadline = time.monotonic() + timeout
        while marker not in self.child.stderr():
            if self.child.poll() is not None or time.monotonic() > deadline:
                self.child.send_signal(signal.SIGKILL)
                output = self.finish(10).output
                raise AssertionError(f"etl never reached {self.point}:\n{output}")
            time.sleep(0.02)
        return self

    def signal(self, signum: int) -> None:
        self.child.send_signal(signum)

    def resume(self) -> None:
        """Let the paused process go on (the file ETL_TEST_PAUSE_RESUME names ends the pause)."""
        self._resume_file.touch()

    def finish(self, timeout: float = 60) -> Result:
        self.result = finish(self.child, timeout)
        return self.result

    def kill(self) -> Result:
        self.signal(signal.SIGKILL)
        return self.finish()


def spawn(
    *args: str,
    wh: TestWarehouse,
    site: Site | None,
    config: Path,
    point: str,
    after: int = 1,
    seconds: float = 3600,
    extra_env: dict[str, str] | None = None,
) -> Paused:
    """Start `etl … <args>` that pauses at `point` (see etl/testhooks.py)."""
    resume_file = Path(tempfile.mkdtemp(prefix="etl-resume-")) / "resume"
    env = {
        "ETL_TEST_PAUSE_AT": point,
        "ETL_TEST_PAUSE_AFTER": str(after),
        "ETL_TEST_PAUSE_SECONDS": str(seconds),
        "ETL_TEST_PAUSE_RESUME": str(resume_file),
        **(extra_env or {}),
    }
    child = start(*args, wh=wh, site=site, config=config, extra_env=env)
    return Paused(child, point, resume_file)


class RequestClock:
    """When each export request reached the simulator (polled every 5 ms)."""

    def __init__(self, api: Any) -> None:
        self._api = api
        self.times: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        seen = 0
        while not self._stop.is_set():
            count = self._api.export_requests
            while seen < count:
                seen += 1
                self.times.append(time.monotonic())
            time.sleep(0.005)

    def stop(self) -> list[float]:
        self._stop.set()
        self._thread.join()
        return [b - a for a, b in zip(self.times, self.times[1:], strict=False)]


def tcp_ports(pid: int) -> set[int]:
    """Local ports of the TCP connections process `pid` has open (Linux /proc)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as fh:
            for line in fh.readlines()[1:]:
                fields = line.split()
                if fields[9] in inodes:
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def terminate_backends(admin_url: str, pid: int, *, lock: bool | None = None) -> int:
    """`pg_terminate_backend` the PostgreSQL sessions of process `pid` (and nobody else's):
    all of them, or (lock=True) only the one holding its advisory lock, or (lock=False) all but
    that one. `admin_url`: a superuser's (the `pg_server` fixture)."""
    from sqlalchemy import create_engine

    ports = sorted(tcp_ports(pid))
    engine = create_engine(admin_url)
    try:
        with engine.begin() as conn:
            killed = conn.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE client_port = ANY(:ports) AND pid <> pg_backend_pid()"
                    + (
                        ""
                        if lock is None
                        else f" AND pid {'' if lock else 'NOT '}IN "
                        # The run lock is a session's advisory lock, held outside any
                        # transaction; a window's transaction holds one too while it moves the
                        # watermark (etl.load.engine.take_turns), to its commit.
                        "(SELECT l.pid FROM pg_locks AS l JOIN pg_stat_activity AS a "
                        "ON a.pid = l.pid WHERE l.locktype = 'advisory' AND a.xact_start IS NULL)"
                    )
                ),
                {"ports": ports},
            ).scalar()
    finally:
        engine.dispose()
    return int(killed or 0)
