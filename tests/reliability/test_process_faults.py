"""The machine and the operator (issue group 5): SIGKILL at several points inside a window,
SIGTERM and Ctrl-C, on both warehouses.

The run pauses at a point of etl/testhooks.py (ETL_TEST_PAUSE_AT) while loading window 2, after
12 conversations loaded (batches of 5: after the third) for `mid-stream`; the test then signals it.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TestWarehouse
from tests.reliability import helpers as h

pytestmark = pytest.mark.reliability

Reference = Callable[[str], h.Snapshot]


def _window_2_paused_at(
    wh: TestWarehouse, make_sim: Any, tmp_path: Path, point: str
) -> tuple[h.Site, Path, h.Snapshot, h.Paused]:
    cfg, site = h.config(tmp_path), h.Site(make_sim)
    wh.migrate()
    site.serve()
    h.preload(wh, site, cfg)
    before = h.snapshot(wh)
    paused = h.spawn(
        "run", "--until", h.UNTIL, wh=wh, site=site, config=cfg, point=point, after=12
    ).wait_paused()
    return site, cfg, before, paused


def _rerun_converges(wh: TestWarehouse, site: h.Site, cfg: Path, reference: Reference) -> None:
    """No manual clean-up: no stale lock, no half transaction, no leftover rows in the way."""
    again = h.run("run", "--until", h.UNTIL, wh=wh, site=site, config=cfg)
    assert again.code == 0, again.output
    h.assert_same(h.snapshot(wh), reference(wh.kind))


@pytest.mark.parametrize("point", ["mid-stream", "mid-copy", "before-commit"])
def test_sigkill_inside_a_window_leaves_nothing_and_the_next_run_converges(
    warehouse: TestWarehouse,
    make_sim: Any,
    tmp_path: Path,
    clean_reference: Reference,
    point: str,
) -> None:
    wh = warehouse
    site, cfg, before, paused = _window_2_paused_at(wh, make_sim, tmp_path, point)

    result = paused.kill()

    assert result.code == -signal.SIGKILL
    h.assert_same(h.snapshot(wh), before)  # nothing of window 2; the watermark did not move
    _rerun_converges(wh, site, cfg, clean_reference)  # started at once: the lock is free


@pytest.mark.parametrize(
    ("signum", "name"), [(signal.SIGTERM, "SIGTERM"), (signal.SIGINT, "SIGINT")]
)
def test_sigterm_or_ctrl_c_rolls_the_window_back(
    warehouse: TestWarehouse,
    make_sim: Any,
    tmp_path: Path,
    clean_reference: Reference,
    signum: int,
    name: str,
) -> None:
    wh = warehouse
    site, cfg, before, paused = _window_2_paused_at(wh, make_sim, tmp_path, "mid-copy")

    paused.signal(signum)
    result = paused.finish()

    assert result.code == 130, result.output  # ExitCode.INTERRUPTED
    message = h.error_of(result)
    assert "interrupted" in message and name in message
    assert f"window {h.W2}" in message and "rolled back" in message
    h.assert_same(h.snapshot(wh), before)
    outcome, error, _ = h.runs(wh)[-1]
    assert outcome == "interrupted", error
    _rerun_converges(wh, site, cfg, clean_reference)


def test_sigterm_once_committed_keeps_the_window(
    pg_warehouse: TestWarehouse, make_sim: Any, tmp_path: Path, clean_reference: Reference
) -> None:
    wh = pg_warehouse
    site, cfg, _, paused = _window_2_paused_at(wh, make_sim, tmp_path, "after-commit")

    paused.signal(signal.SIGTERM)
    result = paused.finish()

    assert result.code == 130, result.output
    message = h.error_of(result)
    assert f"window {h.W2}" in message and "committed" in message
    assert "rolled back" not in message
    h.assert_same(h.snapshot(wh), clean_reference(wh.kind))  # the window finished
    assert [r[0] for r in h.runs(wh)] == ["ok", "ok"]  # and is not recorded as interrupted
    again = h.run("run", "--until", h.UNTIL, wh=wh, site=site, config=cfg)
    assert again.code == 0 and "nothing to load" in again.stderr


@pytest.mark.parametrize("point", ["mid-stream", "before-commit"])
def test_killing_one_of_several_loaders_loses_nothing(
    pg_warehouse: TestWarehouse,
    make_sim: Any,
    tmp_path: Path,
    clean_reference: Reference,
    point: str,
) -> None:
    """Two backfills with two workers each share a range on PostgreSQL; one is killed while
    one of its windows is open. The other leaves that window alone (its holder was alive when
    it came to it) and ends well, the watermark never passes the window that did not commit,
    and the next run takes the dead holder's claim over at once and ends with what a clean
    run gives."""
    wh = pg_warehouse
    cfg, site = h.config(tmp_path), h.Site(make_sim)
    wh.migrate()
    site.serve()
    backfill = ("backfill", "--from", h.START, "--to", h.UNTIL, "--workers", "2")
    victim = h.spawn(*backfill, wh=wh, site=site, config=cfg, point=point, after=12)
    victim.wait_paused()
    # Alongside: it may wait for conversations the victim holds, until the victim is gone.
    alongside = h.start(*backfill, wh=wh, site=site, config=cfg)
    try:  # it leaves the victim's open window alone while the victim lives
        deadline = time.monotonic() + 30
        while "left to another run" not in alongside.stderr() and alongside.poll() is None:
            assert time.monotonic() < deadline, alongside.stderr()
            time.sleep(0.05)
    finally:
        assert victim.kill().code == -signal.SIGKILL
    survived = h.finish(alongside)
    assert survived.code == 0, survived.output
    assert "left to another run" in survived.stderr  # the victim's open window, at least

    loaded = {
        row[0].isoformat()
        for row in h.query(
            wh,
            f"SELECT window_start FROM {wh.table('etl_windows')} WHERE committed_at IS NOT NULL",
        )
    }
    holes = [w for w in (h.W1, h.W2) if w.start.isoformat() not in loaded]
    assert holes  # the killed window did not commit
    mark = h.watermark(wh)
    assert mark is None or mark <= holes[0].start.isoformat()  # never past a hole

    again = h.run(*backfill, wh=wh, site=site, config=cfg)
    assert again.code == 0, again.output
    assert "taking over the claim" in again.stderr and "(it is gone)" in again.stderr
    h.assert_same(h.snapshot(wh), clean_reference(wh.kind))
