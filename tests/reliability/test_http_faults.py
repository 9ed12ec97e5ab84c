"""HTTP-level faults (issue groups 3, 4 and the decompression half of 9), through `etl`.

Waits and timeouts are checked without asserting how long anything took: the simulator's side
shows that a wait was not cut short (the time between two export requests is at least the
client's wait or timeout), the client's log says how long it decided to wait, and a run that
would have waited for a wrong, longer limit misses its deadline (`h.run`'s `timeout`), which is
set several times above what the scenario needs.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from etl.fakeapi import Faults
from tests.conftest import SIM_SECRET, TestWarehouse
from tests.reliability import helpers as h

pytestmark = pytest.mark.reliability

Reference = Callable[[str], h.Snapshot]

# The wait a "retrying" warning announces (pipeline.progress).
_RETRYING_IN = re.compile(r"retrying in ([0-9.]+)s")


def _faulty_second_window(
    wh: TestWarehouse, make_sim: Any, tmp_path: Path, faults: Faults, **sections: Any
) -> tuple[h.Site, Path, h.Snapshot, Any]:
    """Window 1 committed from a healthy site, then the same URL serves `faults`."""
    cfg, site = h.config(tmp_path, **sections), h.Site(make_sim)
    wh.migrate()
    site.serve()
    h.preload(wh, site, cfg)
    before = h.snapshot(wh)
    api = site.serve(faults=faults)
    return site, cfg, before, api


def _fails_cleanly(
    wh: TestWarehouse,
    site: h.Site,
    cfg: Path,
    before: h.Snapshot,
    reference: Reference,
    *,
    code: int,
    cause: str,
    deadline: float = 120,
) -> h.Result:
    """Part 1 and 2 of a scenario: exit code and message; nothing of window 2 committed."""
    result = h.run("run", "--until", h.UNTIL, wh=wh, site=site, config=cfg, timeout=deadline)
    assert result.code == code, result.output
    message = h.error_of(result)
    assert cause in message, message
    assert f"window {h.W2}" in message, message
    h.assert_same(h.snapshot(wh), before)
    assert h.runs(wh)[-1][0] == "failed"
    return result


def _converges(wh: TestWarehouse, site: h.Site, cfg: Path, reference: Reference) -> None:
    """Part 3: the same site without the fault; the result equals a clean run's."""
    site.serve()
    again = h.run("run", "--until", h.UNTIL, wh=wh, site=site, config=cfg)
    assert again.code == 0, again.output
    h.assert_same(h.snapshot(wh), reference(wh.kind))


# -- 429, 5xx ------------------------------------------------------------------------------------


def test_429_retry_after_is_honoured(
    pg_warehouse: TestWarehouse, make_sim: Any, tmp_path: Path, clean_reference: Reference
) -> None:
    wh, site = pg_warehouse, h.Site(make_sim)
    cfg = h.config(tmp_path)
    wh.migrate()
    api = site.serve(faults=Faults(status=429, status_times=1, retry_after="2"))
    clock = h.RequestClock(api)

    result = h.run("run", "--until", h.UNTIL, wh=wh, site=site, config=cfg)

    gaps = clock.stop()
    assert result.code == 0, result.output
    (warning,) = [w for w in h.warnings_of(result) if "retrying" in w]
    assert "HTTP 429, Retry-After 2" in warning and f"window {h.W1}" in warning
    assert "retrying in 2.0s" in warning  # the server's wait, not the 0.05 s backoff
    assert gaps[0] >= 1.95, gaps  # and it was waited out
    h.assert_same(h.snapshot(wh), clean_reference(wh.kind))


def test_retry_after_beyond_max_wait_fails_fast(
    pg_warehouse: TestWarehouse, make_sim: Any, tmp_path: Path, clean_reference: Reference
) -> None:
    wh = pg_warehouse
    # Retry-After beyond max_wait but within max_total_wait; sleeping either (60 s, 600 s)
    # would miss the run's deadline.
    retry = {"max_wait": 60, "max_total_wait": "1h"}
    site, cfg, before, api = _faulty_second_window(
        wh, make_sim, tmp_path, Faults(status=429, retry_after="600"), retry=retry
    )
    result = _fails_cleanly(
        wh, site, cfg, before, clean_reference, code=4, cause="HTTP 429, Retry-After 600",
        deadline=45,
    )  # fmt: skip
    assert "gave up after 1 attempt(s)" in h.error_of(result)
    assert any("wait 600s, more than retry.max_wait=60s" in w for w in h.warnings_of(result))
    assert not [w for w in h.warnings_of(result) if "retrying" in w]
    assert api.export_requests == 1
    _converges(wh, site, cfg, clean_reference)


def test_503_twice_then_success(
    sqlite_warehouse: TestWarehouse, make_sim: Any, tmp_path: Path, clean_reference: Reference
) -> None:
    wh, site = sqlite_warehouse, h.Site(make_sim)
    cfg = h.config(tmp_path, retry={"max_attempts": 3})
    wh.migrate()
    api = site.serve(faults=Faults(status=503, status_times=2))

    result = h.run("run", "--until", h.UNTIL, wh=wh, site=site, config=cfg)

    assert result.code == 0, result.output
    warnings = [w for w in h.warnings_of(result) if "retrying" in w]
    assert len(warnings) == 2
    assert all("HTTP 503" in w and f"window {h.W1}" in w for w in warnings)
    assert api.export_requests == 3 + 1  # window 1 three times, window 2 once
    h.assert_same(h.snapshot(wh), clean_reference(wh.kind))


@pytest.mark.parametrize(
    ("retry", "attempts"),
    [
        pytest.param({"max_attempts": 3}, 3, id="max-attempts"),
        pytest.param(
            {"max_attempts": 50, "initial_wait": 0.4, "max_wait": 0.8, "max_total_wait": "2s"},
            None,
            id="max-total-wait",
        ),
    ],
)
def test_5xx_forever_stops_at_the_configured_limit(
    pg_warehouse: TestWarehouse,
    make_sim: Any,
    tmp_path: Path,
    clean_reference: Reference,
    retry: dict[str, Any],
    attempts: int | None,
) -> None:
    wh = pg_warehouse
    site, cfg, before, api = _faulty_second_window(
        wh, make_sim, tmp_path, Faults(status=502), retry=retry
    )
    result = _fails_cleanly(
        wh, site, cfg, before, clean_reference, code=4, cause="the API failed with HTTP 502"
    )
    made = api.export_requests
    assert f"gave up after {made} attempt(s)" in h.error_of(result)
    waits = [float(_RETRYING_IN.search(w)[1]) for w in h.warnings_of(result) if "retrying" in w]
    assert len(waits) == made - 1
    if attempts is not None:
        assert made == attempts
    else:
        assert 2 <= made < 50
        # max_total_wait bounds the waiting; each logged wait is rounded to 0.1 s.
        assert sum(waits) <= 2.0 + 0.05 * len(waits), waits
    _converges(wh, site, cfg, clean_reference)


# -- silent servers: the timeouts fire within their bound plus a second --------------------------


@pytest.mark.parametrize(
    ("faults", "cause"),
    [
        pytest.param(
            Faults(hang_before_headers=True),
            "accepted the request but sent no response within api.read_timeout=1.0s",
            id="accepts-and-sends-nothing",
        ),
        pytest.param(
            Faults(stall_after_headers=True),
            "stopped sending data (read timeout, api.read_timeout) mid-stream",
            id="stalls-after-headers",
        ),
    ],
)
def test_silent_server_times_out_within_bound(
    pg_warehouse: TestWarehouse,
    make_sim: Any,
    tmp_path: Path,
    clean_reference: Reference,
    faults: Faults,
    cause: str,
) -> None:
    wh = pg_warehouse
    site, cfg, before, api = _faulty_second_window(wh, make_sim, tmp_path, faults)
    clock = h.RequestClock(api)
    # Two read timeouts of 1 s and a short backoff; a timeout of the product's defaults (300 s
    # read, 10 s connect) or none would miss the deadline.
    _fails_cleanly(wh, site, cfg, before, clean_reference, code=4, cause=cause, deadline=18)
    (gap,) = clock.stop()
    assert api.export_requests == 2
    assert gap >= 1.0, gap  # the first attempt waited out its read_timeout
    _converges(wh, site, cfg, clean_reference)


# -- credentials -----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
def test_auth_refused_is_not_retried_and_says_what_to_check(
    pg_warehouse: TestWarehouse,
    make_sim: Any,
    tmp_path: Path,
    clean_reference: Reference,
    status: int,
) -> None:
    wh = pg_warehouse
    site, cfg, before, api = _faulty_second_window(
        wh, make_sim, tmp_path, Faults(status=status), retry={"max_attempts": 5}
    )
    result = _fails_cleanly(
        wh, site, cfg, before, clean_reference, code=3, cause=f"refused access with HTTP {status}"
    )
    message = h.error_of(result)
    assert "token" in message and "export:v3" in message and "allowlist" in message
    assert api.export_requests == 1  # no retry: a static token cannot get better by asking again
    assert not [w for w in h.warnings_of(result) if "retrying" in w]
    _converges(wh, site, cfg, clean_reference)


@pytest.mark.parametrize(
    ("ttl", "revoke"),
    [
        # Tokens live 0.5 s: the client renews each after 0.25 s, before the server lets it lapse.
        pytest.param(0.5, False, id="expires"),
        # The server revokes every token once the backfill is under way: renewed on the 401.
        pytest.param(300.0, True, id="revoked"),
    ],
)
def test_oauth_token_expiring_during_backfill_is_refreshed(
    pg_warehouse: TestWarehouse,
    make_sim: Any,
    tmp_path: Path,
    clean_reference: Reference,
    ttl: float,
    revoke: bool,
) -> None:
    wh, site = pg_warehouse, h.Site(make_sim)
    cfg = h.config(tmp_path, warehouse={"batch_size": 2})  # small batches: a longer backfill
    wh.migrate()
    api = site.serve(token=None, oauth_token_ttl=ttl)  # no static token: only OAuth works
    issued: list[str] = []
    issue = api.tokens.issue

    def recording_issue(*args: Any) -> Any:
        reply = issue(*args)
        if "access_token" in reply.body:
            issued.append(reply.body["access_token"])
        return reply

    api.tokens.issue = recording_issue

    def revoke_once_under_way() -> None:
        deadline = time.monotonic() + 30
        while api.export_requests < 2 and time.monotonic() < deadline:
            time.sleep(0.002)
        api.tokens.expire_all()

    revoker = threading.Thread(target=revoke_once_under_way, daemon=True)
    if revoke:
        revoker.start()
    oauth = {
        "ETL_OAUTH_TOKEN_URL": api.token_url,
        "ETL_OAUTH_CLIENT_ID": "sim-client",
        "ETL_OAUTH_CLIENT_SECRET": SIM_SECRET,
        "ETL_API_TOKEN": "",
    }
    started = time.monotonic()
    result = h.run(
        "backfill", "--from", h.START, "--to", h.UNTIL, "--window", "6h",
        wh=wh, site=site, config=cfg, extra_env=oauth,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    if revoke:
        revoker.join()

    assert result.code == 0, result.output
    if revoke:
        assert api.export_requests == 8 + 1  # 8 windows; one request re-sent with a new token
        assert api.token_requests == 2
    else:
        assert api.export_requests == 8  # never refused: renewed before expiry
        assert api.token_requests >= 2, elapsed
    assert len(issued) == api.token_requests
    h.assert_same(h.snapshot(wh), clean_reference(wh.kind))
    for token in issued:  # the access tokens are secrets too
        assert token not in result.output


# -- decompression -------------------------------------------------------------------------------


def test_urllib3_has_the_decompression_fixes() -> None:
    import urllib3

    version = tuple(int(p) for p in urllib3.__version__.split(".")[:3])
    assert version >= (2, 6, 3), urllib3.__version__
    pyproject = (Path(__file__).parents[2] / "pyproject.toml").read_text()
    assert '"urllib3>=2.6.3' in pyproject


@pytest.mark.parametrize(
    ("faults", "cause"),
    [
        pytest.param(
            Faults(gzip_bomb=True, gzip_bomb_bytes=1 << 30),
            "the decompressed body passed the cap of 20,971,520 bytes (api.max_decompressed_bytes)",
            id="gzip-bomb-1GiB",
        ),
        pytest.param(
            Faults(stacked_encoding=True),
            "stacked Content-Encoding layers",
            id="stacked-encodings",
        ),
    ],
)
def test_decompression_attack_is_refused_with_flat_memory(
    pg_warehouse: TestWarehouse,
    make_sim: Any,
    tmp_path: Path,
    clean_reference: Reference,
    faults: Faults,
    cause: str,
) -> None:
    wh = pg_warehouse
    site, cfg, before, api = _faulty_second_window(
        wh, make_sim, tmp_path, faults, api={"max_decompressed_bytes": 20 * 1024**2}
    )
    baseline = h.start("status", wh=wh, config=cfg)
    h.finish(baseline)
    child = h.start("run", "--until", h.UNTIL, wh=wh, site=site, config=cfg)
    result = h.finish(child)

    assert result.code == 4, result.output
    message = h.error_of(result)
    assert cause in message and f"window {h.W2}" in message
    assert api.export_requests == 1  # refused, not retried
    h.assert_same(h.snapshot(wh), before)
    if child.maxrss_kib and baseline.maxrss_kib:  # measured when forked by the launcher
        grew_mib = (child.maxrss_kib - baseline.maxrss_kib) / 1024
        assert grew_mib < 64, f"peak memory grew by {grew_mib:.0f} MiB over `etl status`"
    _converges(wh, site, cfg, clean_reference)
