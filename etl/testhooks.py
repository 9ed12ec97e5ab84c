"""Pause points for the reliability tests; inert unless ETL_TEST_PAUSE_AT is set.

`ETL_TEST_PAUSE_AT=<point>[,<point>…]` makes the process print `ETL-PAUSED <point> <pid>` on
stderr the first time it reaches <point>, then wait `ETL_TEST_PAUSE_SECONDS` (default 3600) or
until it receives SIGUSR1, so a test can SIGKILL or SIGTERM it, or cut its database connection,
at a known place and then let it go on (tests/reliability). The points, in the order a window
meets them:

* ``mid-stream``: at least `ETL_TEST_PAUSE_AFTER` (default 1) conversations of the window
  loaded (the first batch that reaches the count), the transaction open, more of the export
  possibly still to come;
* ``mid-copy``: inside a batch insert (PostgreSQL: a COPY's rows sent, the COPY not ended);
* ``before-commit``: rows and watermark written, the transaction not yet committed;
* ``after-commit``: the window committed.

A pause point only waits: it changes nothing a run does. The environment is read once, at
the first call (not at import, so a process forked from a pre-imported parent sees its own);
after that, with the variable unset, a call is a set lookup.
"""

from __future__ import annotations

import os
import signal
import sys

from etl import env

_points: frozenset[str] | None = None
_after = 1
_fired: set[str] = set()


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
    resume = {signal.SIGUSR1}
    signal.pthread_sigmask(signal.SIG_BLOCK, resume)
    try:
        sys.stderr.write(f"ETL-PAUSED {name} {os.getpid()}\n")
        sys.stderr.flush()
        # SIGINT/SIGTERM still arrive (their handlers raise); SIGUSR1 just ends the wait.
        signal.sigtimedwait(resume, float(os.environ.get(env.TEST_PAUSE_SECONDS, "3600")))
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, resume)
