"""`etl forget` while a window that carries the same conversation is loading, on both
warehouses: whichever commits first, the conversation ends erased and stays erased."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TestWarehouse
from tests.reliability import helpers as h

pytestmark = pytest.mark.reliability


@pytest.mark.parametrize("point", ["mid-stream", "before-commit"])
def test_forget_during_a_load_of_the_same_conversation_erases_it(
    warehouse: TestWarehouse, make_sim: Any, tmp_path: Path, point: str
) -> None:
    wh = warehouse
    cfg, site = h.config(tmp_path), h.Site(make_sim)
    wh.migrate()
    site.serve()
    h.preload(wh, site, cfg)  # window 1
    window_2 = site.api.matching_ids(h.W2.start, h.W2.end)
    stored = {r[0] for r in h.query(wh, f"SELECT id FROM {wh.table('conversations')}")}
    # One new in window 2, written before the pause (the first batch), and one stored by
    # window 1 that window 2 carries again.
    victims = [
        next(i for i in window_2 if i not in stored),
        next(i for i in window_2 if i in stored),
    ]
    assert window_2.index(victims[0]) < 10
    # Window 2 has written its first batches (new ones locked: placeholder rows) and waits.
    paused = h.spawn(
        "run", "--until", h.UNTIL, wh=wh, site=site, config=cfg, point=point, after=12
    ).wait_paused()

    forget = h.start("forget", *(f"--conversation-id={i}" for i in victims), wh=wh, config=cfg)
    _blocked_or_done(wh, forget)
    paused.resume()
    loaded, forgot = paused.finish(), h.finish(forget)

    assert loaded.code == 0, loaded.output
    assert forgot.code == 0, forgot.output
    listed = ", ".join(map(str, victims))
    assert h.query(wh, f"SELECT id FROM {wh.table('conversations')} WHERE id IN ({listed})") == []
    assert h.query(
        wh, f"SELECT count(*) FROM {wh.table('messages')} WHERE conversation_id IN ({listed})"
    ) == [(0,)]
    # And the next load of the whole range leaves them out.
    again = h.run("backfill", "--from", h.START, "--to", h.UNTIL, wh=wh, site=site, config=cfg)
    assert again.code == 0, again.output
    assert h.query(wh, f"SELECT id FROM {wh.table('conversations')} WHERE id IN ({listed})") == []


def _blocked_or_done(wh: TestWarehouse, child: Any) -> None:
    """Let `etl forget` get as far as it can while the window holds its locks: it finishes
    (it must not erase what the window then commits), or waits for a lock (PostgreSQL
    shows it; SQLite's writer lock cannot be watched: a few seconds)."""
    deadline = time.monotonic() + (30 if wh.kind == "postgres" else 3)
    waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
    while time.monotonic() < deadline:
        if child.poll() is not None:
            return
        if wh.kind == "postgres" and h.query(wh, waiting)[0][0]:
            return
        time.sleep(0.05)
    assert wh.kind != "postgres", "etl forget neither finished nor waited for a lock"
