"""`etl forget` while a window that carries the same conversation is loading, on both
warehouses: whichever commits first, the conversation ends erased and stays erased."""

from __future__ import annotations

import copy
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SEED_EXPORT, TestWarehouse
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


@pytest.mark.parametrize("point", ["mid-stream", "before-commit"])
def test_forget_by_identifier_during_a_load_erases_what_that_load_brings(
    warehouse: TestWarehouse, make_sim: Any, sim_dataset: Any, tmp_path: Path, point: str
) -> None:
    """The window is paused holding a new conversation of the person's: `forget` waits for it
    (PostgreSQL) or runs before it (SQLite), and the person's conversations end erased."""
    wh = warehouse
    cfg, site = h.config(tmp_path), h.Site(make_sim)
    wh.migrate()
    site.serve()
    h.preload(wh, site, cfg)  # window 1
    stored = {r[0] for r in h.query(wh, f"SELECT id FROM {wh.table('conversations')}")}
    window_2 = site.api.matching_ids(h.W2.start, h.W2.end)
    person = next(
        identifier
        for i in window_2[:10]
        if i not in stored
        and (identifier := sim_dataset.conversation(i).get("authentication_identifier"))
    )
    paused = h.spawn(
        "run", "--until", h.UNTIL, wh=wh, site=site, config=cfg, point=point, after=12
    ).wait_paused()

    forget = h.start("forget", f"--authentication-identifier={person}", wh=wh, config=cfg)
    _blocked_or_done(wh, forget)
    paused.resume()
    loaded, forgot = paused.finish(), h.finish(forget)

    assert loaded.code == 0, loaded.output
    assert forgot.code == 0, forgot.output
    theirs = f"SELECT id FROM {wh.table('conversations')} WHERE authentication_identifier = :p"
    assert h.query(wh, theirs.replace(":p", f"'{person}'")) == []
    again = h.run("backfill", "--from", h.START, "--to", h.UNTIL, wh=wh, site=site, config=cfg)
    assert again.code == 0, again.output
    assert h.query(wh, theirs.replace(":p", f"'{person}'")) == []


def test_forget_behind_a_window_that_never_ends_gives_up_and_lets_windows_through(
    pg_warehouse: TestWarehouse, make_sim: Any, tmp_path: Path
) -> None:
    """A window stuck mid-load (here: paused) holds the erasure gate. forget waits for it as a
    window waits for another (pipeline.claim_timeout), then fails having erased nothing;
    meanwhile a window that starts behind it is let through, not held by both."""
    wh = pg_warehouse
    cfg = h.config(tmp_path, pipeline={"claim_timeout": "3s"})
    site = h.Site(make_sim)
    wh.migrate()
    site.serve()
    stuck = h.spawn(
        "backfill", "--from", h.START, "--to", h.MIDDLE, wh=wh, site=site, config=cfg,
        point="mid-stream",
    ).wait_paused()  # fmt: skip
    try:
        forget = h.start("forget", "--authentication-identifier=someone@example.com", wh=wh,
                         config=cfg)  # fmt: skip
        _blocked_or_done(wh, forget)
        other = h.run("backfill", "--from", h.MIDDLE, "--to", h.UNTIL, wh=wh, site=site,
                      config=cfg, timeout=120)  # fmt: skip
        forgot = h.finish(forget)
    finally:
        stuck.resume()
        stuck.finish()
    assert forgot.code == 7, forgot.output
    message = h.error_of(forgot)
    assert "pipeline.claim_timeout" in message and "nothing was erased" in message, message
    assert other.code == 0, other.output
    assert h.query(wh, f"SELECT count(*) FROM {wh.table('etl_erased_keys')}") == [(0,)]


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


def _seed_file(tmp_path: Path, name: str, change: Any) -> Path:
    """The seed export, as `change(query_info, conversation)` leaves it, saved as `name`."""
    query_info, conversation, post_query_info = json.loads(SEED_EXPORT.read_text())
    change(query_info, conversation)
    path = tmp_path / name
    path.write_text(json.dumps([query_info, conversation, post_query_info]))
    return path


def _while_a_file_loads(
    wh: TestWarehouse, cfg: Path, load_file: list[str], other: list[str]
) -> None:
    """`etl load-file <load_file>` paused before its commit, `etl <other>` started meanwhile
    (it waits for the window or finishes), then the load resumed: both must succeed."""
    paused = h.spawn(
        "load-file", *load_file, wh=wh, site=None, config=cfg, point="before-commit"
    ).wait_paused()
    child = h.start(*other, wh=wh, config=cfg)
    _blocked_or_done(wh, child)
    paused.resume()
    loaded, done = paused.finish(), h.finish(child)
    assert loaded.code == 0, loaded.output
    assert done.code == 0, done.output


def test_forget_erases_a_copy_a_window_quarantined_while_it_waited(
    warehouse: TestWarehouse, tmp_path: Path
) -> None:
    """The window quarantines the conversation and pauses before its commit; the forget that
    comes then waits for it. It read the quarantine before waiting, and so left the copy the
    window committed meanwhile (the whole transcript) in etl_rejects."""
    wh = warehouse
    wh.migrate()
    cfg = h.config(tmp_path)

    def break_it(_query_info: dict[str, Any], conversation: dict[str, Any]) -> None:
        conversation["messages"][0]["id"] = "not an id"

    bad = _seed_file(tmp_path, "bad.json", break_it)
    cid = json.loads(bad.read_text())[1]["id"]
    _while_a_file_loads(
        wh,
        cfg,
        ["--on-bad-conversation=quarantine", str(bad)],
        ["forget", f"--conversation-id={cid}"],
    )
    assert h.query(wh, f"SELECT conversation_id FROM {wh.table('etl_tombstones')}") == [(cid,)]
    assert h.query(wh, f"SELECT count(*) FROM {wh.table('etl_rejects')}") == [(0,)]


def test_prune_leaves_a_conversation_a_window_made_recent_while_it_waited(
    warehouse: TestWarehouse, tmp_path: Path
) -> None:
    """An old conversation is stored; a window loading its continuation (a message an hour
    old) pauses before its commit, and a prune comes: it picked the conversation as expired
    before waiting for the window, and removed it after the window had made it recent."""
    wh = warehouse
    wh.migrate()
    cfg = h.config(tmp_path)
    old = _seed_file(tmp_path, "old.json", lambda _q, _c: None)
    assert h.run("load-file", str(old), wh=wh, config=cfg).code == 0
    now = datetime.now(UTC).replace(microsecond=0)

    def continue_it(query_info: dict[str, Any], conversation: dict[str, Any]) -> None:
        query_info["current_time"] = now.isoformat()
        message = copy.deepcopy(conversation["messages"][1])
        message["id"] = 99_999_999
        message["time"] = (now - timedelta(hours=1)).isoformat()
        conversation["messages"].append(message)
        conversation["time"]["last_message_created"] = message["time"]

    new = _seed_file(tmp_path, "new.json", continue_it)
    cid = json.loads(new.read_text())[1]["id"]
    _while_a_file_loads(wh, cfg, [str(new)], ["prune", "--older-than", "400d"])
    assert h.query(wh, f"SELECT id FROM {wh.table('conversations')}") == [(cid,)]
    assert h.query(
        wh, f"SELECT count(*) FROM {wh.table('messages')} WHERE conversation_id = {cid}"
    ) == [(len(json.loads(new.read_text())[1]["messages"]),)]
