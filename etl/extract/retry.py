"""The tenacity policy for retrying a whole window: backoff with jitter, Retry-After honoured."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

from tenacity import RetryCallState, Retrying, retry_if_exception

from etl.config import RetrySettings
from etl.errors import EtlError

log = logging.getLogger(__name__)


def is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, EtlError) and exc.retryable


def next_wait(
    settings: RetrySettings, attempt: int, exc: BaseException | None, rng: random.Random
) -> float:
    """Seconds to wait before attempt `attempt + 1`: the server's Retry-After, else full-jitter backoff."""
    retry_after = getattr(exc, "retry_after", None)
    if isinstance(retry_after, int | float) and retry_after >= 0:
        return float(retry_after)
    ceiling = min(settings.max_wait, settings.initial_wait * (2 ** (attempt - 1)))
    return rng.uniform(settings.initial_wait / 2, max(ceiling, settings.initial_wait / 2))


class _Policy:
    # tenacity (>= 8.3) computes the wait before asking stop, so stop sees `upcoming_sleep`.
    def __init__(self, settings: RetrySettings, rng: random.Random) -> None:
        self.settings = settings
        self.rng = rng

    def wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        return next_wait(self.settings, state.attempt_number, exc, self.rng)

    def stop(self, state: RetryCallState) -> bool:
        s = self.settings
        if state.attempt_number >= s.max_attempts:
            return True
        planned = state.upcoming_sleep
        # A server asking us to wait longer than we may is a failure now, not a long sleep.
        if planned > s.max_wait:
            log.warning(
                "the server asked to wait %.0fs, more than retry.max_wait=%.0fs: giving up",
                planned,
                s.max_wait,
            )
            return True
        elapsed = state.seconds_since_start or 0.0
        return elapsed + planned > s.max_total_wait.total_seconds()


def window_retrying(
    settings: RetrySettings,
    before_sleep: Callable[[RetryCallState], None] | None = None,
    rng: random.Random | None = None,
) -> Retrying:
    """A `Retrying` that re-runs a window on retryable errors and re-raises the last error."""
    policy = _Policy(settings, rng or random.Random())
    return Retrying(
        retry=retry_if_exception(is_retryable),
        stop=policy.stop,
        wait=policy.wait,
        before_sleep=before_sleep,
        reraise=True,
    )
