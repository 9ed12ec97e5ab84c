"""Courtesy to the API: how many export requests a process has in flight, and when.

An export request is in flight from its POST until its body is read (the server serializes
while it streams). The windows of a run share one `RequestGate`:

* at most `api.max_concurrency` requests at once (no cap of its own when unset: one per worker);
* a `Retry-After` pauses every window's next request, not only the answered one's: a 429's, and
  a 5xx's (a 503 "come back in 30 s" is about the server, not about one window);
* each 429 lowers the number allowed at once to one fewer than were in flight, down to one, for
  the rest of the run. So a run with more workers than the server accepts settles at what the
  server accepts instead of spending its windows' retries on refusals. It does not probe upwards
  again: each probe the server refuses costs a window one of its attempts, and a nightly run is
  short; the next run starts from `api.max_concurrency` again.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Final

log = logging.getLogger("etl.extract")

# A 429 without a Retry-After pauses new requests this long (the window's own retry backs off
# further, with jitter).
DEFAULT_PAUSE_SECONDS: Final = 1.0


class Slot:
    """One request's place in flight; `release` is idempotent (a stream may be closed twice)."""

    def __init__(self, gate: RequestGate) -> None:
        self._gate: RequestGate | None = gate

    def release(self) -> None:
        gate, self._gate = self._gate, None
        if gate is not None:
            gate._release()


class RequestGate:
    """Shared by the window threads of one process (see the module's docstring)."""

    def __init__(self, max_concurrency: int | None, *, max_pause: float = 120.0) -> None:
        # A Retry-After beyond this fails its window at once (retry.max_wait): the other
        # windows do not wait for it either.
        self._max_pause = max_pause
        self._allowed = max_concurrency  # None: no limit until the server refuses
        self._in_flight = 0
        self._resume_at = 0.0
        self._cond = threading.Condition()

    @property
    def allowed(self) -> int | None:
        """How many requests may be in flight at once now (None: no limit)."""
        with self._cond:
            return self._allowed

    def acquire(self) -> Slot:
        """Wait for a place in flight (and for any pause after a 429 to pass)."""
        with self._cond:
            while True:
                pause = self._resume_at - time.monotonic()
                if pause <= 0 and (self._allowed is None or self._in_flight < self._allowed):
                    break
                self._cond.wait(timeout=pause if pause > 0 else None)
            self._in_flight += 1
        return Slot(self)

    def refused(self, retry_after: float | None) -> None:
        """The server refused a request with 429 (`retry_after`: its Retry-After, seconds)."""
        with self._cond:
            before = self._allowed
            # The refused request still holds its slot: the server took in_flight - 1.
            self._allowed = max(1, min(self._allowed or self._in_flight, self._in_flight) - 1)
            pause = self._pause(retry_after if retry_after is not None else DEFAULT_PAUSE_SECONDS)
            allowed = self._allowed
        if before != allowed:
            log.warning(
                "the API refused a request (429): at most %d export request(s) in flight from "
                "now on, every window pausing %.1fs",
                allowed,
                pause,
            )

    def asked_to_wait(self, retry_after: float) -> None:
        """The server answered an error with a Retry-After (a 503, say): every window's next
        request waits for it; the number allowed in flight stays."""
        with self._cond:
            pause = self._pause(retry_after)
        if pause:
            log.info("the API asked to wait %.1fs (Retry-After): every window pauses", pause)

    def _pause(self, seconds: float) -> float:
        """Hold new requests for `seconds` (under the lock); one beyond max_pause fails its
        window at once instead, and the others do not wait for it either."""
        pause = seconds if seconds <= self._max_pause else 0.0
        self._resume_at = max(self._resume_at, time.monotonic() + pause)
        return pause

    def _release(self) -> None:
        with self._cond:
            self._in_flight -= 1
            self._cond.notify_all()
