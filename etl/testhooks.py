"""Pause points for the reliability tests; inert unless ETL_TEST_PAUSE_AT is set.

`ETL_TEST_PAUSE_AT=<point>[,<point>…]` makes the process print `ETL-PAUSED <point> <pid>` on
stderr the first time it reaches <point>, then wait `ETL_TEST_PAUSE_SECONDS` (default 3600) or
until the file `ETL_TEST_PAUSE_RESUME` exists, so a test can SIGKILL or SIGTERM it, or cut its
database connection, at a known place and then let it go on (tests/reliability). The points,
in the order a window meets them:

* ``mid-stream``: at least `ETL_TEST_PAUSE_AFTER` (default 1) conversations of the window
  normalized and handed to the loading thread (the first batch that reaches the count), the
  transaction open, more of the export possibly still to come;
* ``mid-copy``: inside a batch insert, in the loading thread (PostgreSQL: a COPY's rows sent,
  the COPY not ended);
* ``before-commit``: rows and watermark written, the transaction not yet committed;
* ``after-commit``: the window committed.

A pause point only waits: it changes nothing a run does. The environment is read at the first
call (not at import: tests fork `etl` processes from a parent that imported the project), and
with the variable unset a call is a set lookup. A file, not a signal, ends a pause, since the
paused thread need not be the main thread, which alone runs signal handlers.
"""

from __future__ import annotations

import os
import sys
import threading
import time

from etl import env

_POLL_SECONDS = 0.01
_points: frozenset[str] | None = None
_after = 1
_fired: set[str] = set()
_waking: dict[int, threading.Event] = {}  # the threads waiting at a pause point


def _read_environment() -> frozenset[str]:
    global _points, _after
    wanted = os.environ.get(env.TEST_PAUSE_AT, "")
    _points = frozenset(p.strip() for p in wanted.split(",") if p.strip())
    _after = int(os.environ.get(env.TEST_PAUSE_AFTER, "1") or 1)
    return _points


def pause_point(name: str, count: int | None = None) -> None:
    """Pause here if a test asked for `name` (with `count`: once it reaches the threshold)."""
    points = _points if _points is not None else _read_environment()
    if name not in points or name in _fired or (count is not None and count < _after):
        return
    _fired.add(name)
    woken = _waking.setdefault(threading.get_ident(), threading.Event())
    resume = os.environ.get(env.TEST_PAUSE_RESUME, "")
    deadline = time.monotonic() + float(os.environ.get(env.TEST_PAUSE_SECONDS, "3600"))
    try:
        sys.stderr.write(f"ETL-PAUSED {name} {os.getpid()}\n")
        sys.stderr.flush()
        # In the main thread SIGINT/SIGTERM still arrive (their handlers raise between waits).
        while not (resume and os.path.exists(resume)) and time.monotonic() < deadline:
            if woken.wait(_POLL_SECONDS):
                break
    finally:
        _waking.pop(threading.get_ident(), None)


def wake(thread: threading.Thread) -> None:
    """End a pause `thread` waits at, if any (a no-op otherwise): an interrupted run stops its
    threads, and a test that paused one and then interrupts the run must not wait an hour."""
    woken = _waking.get(thread.ident) if thread.ident is not None else None
    if woken is not None:
        woken.set()
