"""The window retry policy: which errors retry, Retry-After, attempt and total-wait limits."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from etl.config import RetrySettings
from etl.errors import DataError
from etl.extract.client import parse_retry_after
from etl.extract.errors import AuthError, BrokenStreamError, RetriableAPIError
from etl.extract.retry import next_wait, window_retrying


def run_policy(settings: RetrySettings, errors: list[BaseException]) -> tuple[int, list[float]]:
    calls = 0
    sleeps: list[float] = []
    retrying = window_retrying(settings, rng=random.Random(7))
    retrying.sleep = sleeps.append  # type: ignore[method-assign]  # record instead of sleeping
    try:
        for attempt in retrying:
            with attempt:
                calls += 1
                if calls <= len(errors):
                    raise errors[calls - 1]
    except Exception:  # noqa: BLE001
        pass
    return calls, sleeps


def test_retryable_errors_retry_until_success() -> None:
    settings = RetrySettings(max_attempts=5, initial_wait=0.5, max_wait=10)
    calls, sleeps = run_policy(settings, [BrokenStreamError("x"), RetriableAPIError("y")])
    assert calls == 3
    assert len(sleeps) == 2 and all(0 < s <= 10 for s in sleeps)


def test_fatal_errors_do_not_retry() -> None:
    settings = RetrySettings(max_attempts=5)
    for error in (AuthError(401, "nope"), DataError("bad shape")):
        calls, sleeps = run_policy(settings, [error])
        assert calls == 1 and sleeps == []


def test_stops_after_max_attempts() -> None:
    settings = RetrySettings(max_attempts=3, initial_wait=0.01, max_wait=1)
    calls, sleeps = run_policy(settings, [BrokenStreamError("x")] * 10)
    assert calls == 3 and len(sleeps) == 2


def test_retry_after_is_honoured_and_too_long_fails_fast() -> None:
    settings = RetrySettings(max_attempts=5, initial_wait=1, max_wait=30)
    calls, sleeps = run_policy(settings, [RetriableAPIError("429", retry_after=7)])
    assert calls == 2 and sleeps == [7.0]
    calls, sleeps = run_policy(settings, [RetriableAPIError("429", retry_after=3600)])
    assert calls == 1 and sleeps == []


def test_retry_after_beyond_max_wait_fails_fast_even_within_the_total_budget() -> None:
    """The limit for one wait is `max_wait`, not `max_total_wait`: a Retry-After between the
    two fails at once (a policy that compared it with the total budget would sleep it)."""
    settings = RetrySettings(
        max_attempts=5, initial_wait=1, max_wait=30, max_total_wait=timedelta(minutes=10)
    )
    calls, sleeps = run_policy(settings, [RetriableAPIError("429", retry_after=60)])
    assert calls == 1 and sleeps == []
    calls, sleeps = run_policy(settings, [RetriableAPIError("429", retry_after=30)])
    assert calls == 2 and sleeps == [30.0]  # exactly max_wait is still allowed


def test_total_wait_budget_stops_retries() -> None:
    settings = RetrySettings(
        max_attempts=50, initial_wait=5, max_wait=5, max_total_wait=timedelta(seconds=3)
    )
    calls, sleeps = run_policy(settings, [RetriableAPIError("boom", retry_after=4)] * 50)
    assert calls == 1 and sleeps == []


def test_backoff_grows_and_is_capped() -> None:
    settings = RetrySettings(initial_wait=1, max_wait=8)
    rng = random.Random(1)
    waits = [max(next_wait(settings, n, None, rng) for _ in range(200)) for n in range(1, 7)]
    assert waits[0] <= 1.0 and waits[3] > 4.0
    assert all(w <= 8.0 for w in waits)


@pytest.mark.parametrize(("value", "expected"), [("12", 12.0), (None, None), ("soon", None)])
def test_parse_retry_after_seconds(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_parse_retry_after_http_date() -> None:
    from datetime import UTC, datetime
    from email.utils import format_datetime

    when = datetime.now(UTC) + timedelta(seconds=30)
    seconds = parse_retry_after(format_datetime(when, usegmt=True))
    assert seconds is not None and 25 <= seconds <= 31
