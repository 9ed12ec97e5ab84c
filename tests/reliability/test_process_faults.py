"""The machine and the operator (issue group 5): SIGKILL at several points inside a window,
SIGTERM and Ctrl-C, on both warehouses.

The run pauses at a point of etl/testhooks.py (ETL_TEST_PAUSE_AT) while loading window 2, after
12 conversations loaded (batches of 5: after the third) for `mid-stream`; the test then signals it.
"""

from __future__ import annotations

import signal
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
