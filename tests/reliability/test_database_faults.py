"""The database and the run lock (issue groups 6 and 7)."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from tests.conftest import TestWarehouse
from tests.reliability import helpers as h

pytestmark = pytest.mark.reliability

Reference = Callable[[str], h.Snapshot]


def _prepared(
    wh: TestWarehouse, make_sim: Any, tmp_path: Path, **sections: Any
) -> tuple[h.Site, Path, h.Snapshot]:
    cfg, site = h.config(tmp_path, **sections), h.Site(make_sim)
    wh.migrate()
    site.serve()
    h.preload(wh, site, cfg)
    return site, cfg, h.snapshot(wh)


# -- the connection terminated mid-window ----------------------------------------------------------


@pytest.mark.parametrize("point", ["mid-stream", "mid-copy", "before-commit"])
def test_connection_terminated_mid_window_fails_clearly_and_converges(
    pg_server: str,
    pg_warehouse: TestWarehouse,
    make_sim: Any,
    tmp_path: Path,
    clean_reference: Reference,
    point: str,
) -> None:
    wh = pg_warehouse
    # One attempt: the terminated connection must fail the window, not be papered over.
    site, cfg, before = _prepared(wh, make_sim, tmp_path, retry={"max_attempts": 1})
    paused = h.spawn(
        "run", "--until", h.UNTIL, wh=wh, site=site, config=cfg, point=point, after=12
    ).wait_paused()

    assert h.terminate_backends(pg_server, paused.pid) >= 1
    h.assert_same(h.snapshot(wh), before)  # the server rolled the window back at once
    paused.resume()
    result = paused.finish()

    assert result.code == 7, result.output  # ExitCode.DATABASE
    message = h.error_of(result)
    assert f"window {h.W2}" in message, message
    # Every session of the run was cut: the data connection's loss, or (when the window was
    # about to commit) the run lock's, is what stops it.
    assert "connection was lost" in message or "session holding the run lock" in message
    assert "rolled back" in message, message
    assert h.DB_PASSWORD not in message and "Traceback" not in result.output
    h.assert_same(h.snapshot(wh), before)
    again = h.run("run", "--until", h.UNTIL, wh=wh, site=site, config=cfg)
    assert again.code == 0, again.output
    h.assert_same(h.snapshot(wh), clean_reference(wh.kind))


def test_connection_terminated_mid_window_is_retried(
    pg_server: str,
    pg_warehouse: TestWarehouse,
    make_sim: Any,
    tmp_path: Path,
    clean_reference: Reference,
) -> None:
    """With retries left, a lost connection is retried like a broken stream: the run succeeds."""
    wh = pg_warehouse
    site, cfg, _ = _prepared(wh, make_sim, tmp_path)
    paused = h.spawn(
        "run", "--until", h.UNTIL, wh=wh, site=site, config=cfg, point="mid-copy"
    ).wait_paused()
    assert h.terminate_backends(pg_server, paused.pid, lock=False) == 1  # the data connection only
    paused.resume()
    result = paused.finish()

    assert result.code == 0, result.output
    (warning,) = [w for w in h.warnings_of(result) if "retrying" in w]
    assert f"window {h.W2}" in warning and "connection was lost" in warning
    h.assert_same(h.snapshot(wh), clean_reference(wh.kind))


def test_lock_session_terminated_mid_run_stops_before_commit(
    pg_server: str,
    pg_warehouse: TestWarehouse,
    make_sim: Any,
    tmp_path: Path,
    clean_reference: Reference,
) -> None:
    """Only the session holding the advisory lock dies (an idle-session timeout, a DBA): another
    run could now start, so this one must not commit the window it is loading."""
    wh = pg_warehouse
    site, cfg, before = _prepared(wh, make_sim, tmp_path)
    paused = h.spawn(
        "run", "--until", h.UNTIL, wh=wh, site=site, config=cfg, point="before-commit"
    ).wait_paused()
    assert h.terminate_backends(pg_server, paused.pid, lock=True) == 1
    paused.resume()
    result = paused.finish()

    assert result.code == 7, result.output
    message = h.error_of(result)
    assert "session holding the run lock has ended" in message, message
    assert f"window {h.W2}" in message and "rolled back" in message
    h.assert_same(h.snapshot(wh), before)
    again = h.run("run", "--until", h.UNTIL, wh=wh, site=site, config=cfg)
    assert again.code == 0, again.output
    h.assert_same(h.snapshot(wh), clean_reference(wh.kind))


# -- the database down at start --------------------------------------------------------------------


def _unreachable(wh: TestWarehouse, tmp_path: Path) -> tuple[TestWarehouse, str]:
    if wh.kind == "postgres":
        url = make_url(wh.url).set(port=1).render_as_string(hide_password=False)  # closed
        return TestWarehouse(wh.kind, url, wh.schema), "127.0.0.1"
    missing = tmp_path / "no-such-directory" / "warehouse.db"
    return TestWarehouse(wh.kind, f"sqlite:///{missing}", None), "no-such-directory"


def test_database_down_at_start(
    warehouse: TestWarehouse, make_sim: Any, tmp_path: Path, clean_reference: Reference
) -> None:
    wh = warehouse
    site, cfg, before = _prepared(wh, make_sim, tmp_path)
    down, where = _unreachable(wh, tmp_path)
    fetched = site.api.export_requests

    # Fails at once: no window is attempted, so nothing is retried; a run that kept trying to
    # connect would miss the deadline.
    result = h.run("run", "--until", h.UNTIL, wh=down, site=site, config=cfg, timeout=30)

    # A SQLite file that is not there is a path to check (exit 2), not a server to wait for.
    assert result.code == (7 if wh.kind == "postgres" else 2), result.output
    message = h.error_of(result)
    assert where in message and "warehouse" in message, message
    assert not [w for w in h.warnings_of(result) if "retrying" in w]
    assert site.api.export_requests == fetched  # nothing fetched for a warehouse we cannot reach
    assert h.DB_PASSWORD not in result.output and "Traceback" not in result.output
    h.assert_same(h.snapshot(wh), before)
    again = h.run("run", "--until", h.UNTIL, wh=wh, site=site, config=cfg)
    assert again.code == 0, again.output
    h.assert_same(h.snapshot(wh), clean_reference(wh.kind))


# -- one run at a time -----------------------------------------------------------------------------


def test_two_runs_at_once(
    warehouse: TestWarehouse, make_sim: Any, tmp_path: Path, clean_reference: Reference
) -> None:
    wh = warehouse
    site, cfg, _ = _prepared(wh, make_sim, tmp_path)
    first = h.spawn(
        "run", "--until", h.UNTIL, wh=wh, site=site, config=cfg, point="mid-stream"
    ).wait_paused()

    # The first stays paused until resumed below: the second ending at all means it did not
    # wait for the first (h.run would time out).
    second = h.run("run", "--until", h.UNTIL, wh=wh, site=site, config=cfg)
    first.resume()
    first_result = first.finish()

    if wh.kind == "sqlite":  # one writer: one run at a time, the second refused at once
        assert second.code == 6, second.output  # ExitCode.LOCKED
        message = h.error_of(second)
        assert "holds the lock" in message and "wait for it to finish" in message
        assert "(run, backfill, load-file or reprocess-rejects)" in message
    else:  # PostgreSQL: the second run leaves the window the first has claimed to it
        assert second.code == 0, second.output
        assert f"window {h.W2}: left to another run" in second.stderr
    assert site.api.export_requests == 1 + 1  # the preload's and the first run's
    assert first_result.code == 0, first_result.output
    h.assert_same(h.snapshot(wh), clean_reference(wh.kind))


def test_lock_of_a_frozen_run_holds_and_of_a_killed_run_does_not(
    warehouse: TestWarehouse, make_sim: Any, tmp_path: Path, clean_reference: Reference
) -> None:
    wh = warehouse
    site, cfg, before = _prepared(wh, make_sim, tmp_path)
    first = h.spawn(
        "run", "--until", h.UNTIL, wh=wh, site=site, config=cfg, point="mid-copy"
    ).wait_paused()
    first.signal(signal.SIGSTOP)  # alive but frozen (a stuck run): its lock, or claim, holds
    try:
        blocked = h.run("run", "--until", h.UNTIL, wh=wh, site=site, config=cfg)
    finally:
        first.signal(signal.SIGKILL)
    if wh.kind == "sqlite":
        assert blocked.code == 6, blocked.output
    else:
        assert blocked.code == 0, blocked.output
        assert f"window {h.W2}: left to another run" in blocked.stderr
    assert first.finish().code == -signal.SIGKILL

    # Immediately: a killed run's lock dies with its process (a POSIX lock) or session (advisory
    # lock), and with it its claim on the window.
    again = h.run("run", "--until", h.UNTIL, wh=wh, site=site, config=cfg)
    assert again.code == 0, again.output
    if wh.kind == "postgres":
        assert "taking over the claim" in again.stderr and "(it is gone)" in again.stderr
    h.assert_same(h.snapshot(wh), clean_reference(wh.kind))
    assert before.watermark == h.MIDDLE_UTC


def test_a_run_waits_as_long_as_the_run_holding_its_rows_is_alive(
    pg_warehouse: TestWarehouse, make_sim: Any, tmp_path: Path, clean_reference: Reference
) -> None:
    """A backfill's window holds conversations a run's window wants for longer than
    pipeline.claim_timeout, alive and heartbeating (a long window on a slow API): the run
    waits again, using no attempt, instead of failing with "if that run is stuck, stop it"
    (found in review: exit 7 after its attempts)."""
    wh = pg_warehouse
    site, cfg, _ = _prepared(wh, make_sim, tmp_path, pipeline={"claim_timeout": "2s"})
    # Windows of 12 h: not the run's window, but the same conversations.
    holder = h.spawn(
        "backfill", "--from", h.MIDDLE, "--to", h.UNTIL, "--window", "12h",
        wh=wh, site=site, config=cfg, point="mid-stream", after=12,
    ).wait_paused()  # fmt: skip
    waiter = h.start("run", "--until", h.UNTIL, wh=wh, site=site, config=cfg)
    try:
        h.wait_for_output(waiter, "waiting again", timeout=60)
        h.wait_for_output(waiter, "waiting again", timeout=60, times=2)  # no attempt used up
    finally:
        holder.resume()
    held = holder.finish()
    waited = h.finish(waiter)
    assert held.code == 0, held.output
    assert waited.code == 0, waited.output
    (warning, *_) = [w for w in h.warnings_of(waited) if "waiting again" in w]
    assert f"window {h.W2}" in warning and "alive, loading" in warning
    assert not [w for w in h.warnings_of(waited) if "retrying" in w]
    h.assert_same(h.snapshot(wh), clean_reference(wh.kind))


def test_windows_that_only_wait_for_a_frozen_run_do_not_vouch_for_each_other(
    pg_warehouse: TestWarehouse, make_sim: Any, tmp_path: Path
) -> None:
    """Two windows of one run wait for rows a frozen run holds: neither counts the other as
    a run that is loading, so each uses up its attempts and the run ends with exit 7 (found
    in review: they waited for each other for good)."""
    wh = pg_warehouse
    cfg, site = h.config(tmp_path, pipeline={"claim_timeout": "2s"}), h.Site(make_sim)
    wh.migrate()
    site.serve()
    # One window of two days holds every conversation of both days until its commit.
    holder = h.spawn(
        "backfill", "--from", h.START, "--to", h.UNTIL, "--window", "2d",
        wh=wh, site=site, config=cfg, point="before-commit",
    ).wait_paused()  # fmt: skip
    holder.signal(signal.SIGSTOP)
    try:
        # A deadline, not a measurement: two attempts of 2 s per window, and start-up.
        blocked = h.run(
            "backfill", "--from", h.START, "--to", h.UNTIL, "--window", "1d", "--workers", "2",
            wh=wh, site=site, config=cfg, timeout=90,
        )  # fmt: skip
    finally:
        holder.signal(signal.SIGKILL)
        holder.finish()
    assert blocked.code == 7, blocked.output
    message = h.error_of(blocked)
    assert "gave up waiting (pipeline.claim_timeout)" in message
    assert "gave up after 2 attempt(s)" in message


def test_lock_session_outlives_idle_timeouts_and_not_a_dead_machine(
    pg_warehouse: TestWarehouse,
) -> None:
    """A machine that dies without closing its connection leaves no FIN for the server to see:
    the lock session asks the server to probe it (gone within about a minute, not the 2-hour
    TCP default), and is exempt from a DBA's idle_session_timeout (it is idle by design)."""
    from etl.load.lock import RunLock

    engine = pg_warehouse.engine()
    try:
        with RunLock(engine, f"probe:{pg_warehouse.schema}") as lock:
            conn = lock._conn
            assert conn is not None
            (idle, interval, count), other = _keepalives(conn, "idle_session_timeout")
    finally:
        engine.dispose()
    assert idle + interval * count <= 90
    assert other == "0"


def test_every_session_asks_the_server_to_probe_a_dead_machine(
    pg_warehouse: TestWarehouse,
) -> None:
    """A window's session holds row locks to its commit: a machine that dies mid-window must
    not leave them for TCP's two hours, during which other windows wait for those rows. The
    user's own settings win: the URL's `options` here (and a DBA's, or ALTER ROLE's)."""
    from sqlalchemy.engine import make_url

    from etl.load.engine import make_engine

    own = "-c statement_timeout=5min -c tcp_keepalives_idle=5"
    url = make_url(pg_warehouse.url).update_query_dict({"options": own})
    engine = make_engine(url.render_as_string(hide_password=False))
    try:
        with engine.connect() as conn:
            keepalives, other = _keepalives(conn, "statement_timeout")
    finally:
        engine.dispose()
    assert keepalives == (5, 10, 3)  # the user's idle, the rest ours
    assert other == "5min"


def _keepalives(conn: Any, other: str) -> tuple[tuple[int, ...], Any]:
    """The session's server-side keepalives (idle, interval, count), and setting `other`."""
    from sqlalchemy import text

    def show(name: str) -> Any:
        return conn.execute(text(f"SHOW {name}")).scalar()

    names = ("tcp_keepalives_idle", "tcp_keepalives_interval", "tcp_keepalives_count")
    return tuple(int(show(name)) for name in names), show(other)
