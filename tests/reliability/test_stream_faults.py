"""Faults inside the export stream (issue groups 1 and 2), through the real `etl` command.

Window 1 is committed first; the simulator then breaks window 2 after 12 conversations, by which
time two batches of 5 are already written inside the window's transaction. Each scenario checks
the exit code and a message naming the cause and the window, that nothing of window 2 is left
and the watermark did not move, and that a re-run without the fault equals a clean run.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from etl.fakeapi import Faults
from tests.conftest import TestWarehouse
from tests.reliability import helpers as h

pytestmark = pytest.mark.reliability

AFTER = 12  # conversations sent before the fault; batch_size 5 → 10 already written


def _converges(
    wh: TestWarehouse, site: h.Site, cfg: Path, reference: Callable[[str], h.Snapshot]
) -> None:
    site.serve()
    again = h.run("run", "--until", h.UNTIL, wh=wh, site=site, config=cfg)
    assert again.code == 0, again.output
    h.assert_same(h.snapshot(wh), reference(wh.kind))


@pytest.mark.parametrize(
    ("faults", "cause"),
    [
        pytest.param(
            Faults(error_after=AFTER),
            f"the API reported an error mid-stream after {AFTER} conversations",
            id="error-element-always",
        ),
        pytest.param(
            Faults(truncate_after=AFTER), "the connection broke mid-stream", id="closed-mid-array"
        ),
        pytest.param(
            Faults(truncate_gzip=True, truncate_gzip_after=AFTER),
            "ended before the end of its gzip/deflate stream",
            id="truncated-gzip",
        ),
        pytest.param(Faults(invalid_json=True), "is not valid JSON", id="not-json"),
        pytest.param(
            Faults(unterminated_array=True),
            "ended before its JSON array was closed",
            id="array-never-closed",
        ),
        pytest.param(
            Faults(omit_post_query_info=True),
            "ended without post_query_info",
            id="no-post-query-info",
        ),
        pytest.param(
            Faults(undercount=2),
            "conversations but the stream carried",
            id="fewer-than-announced",
        ),
    ],
)
def test_broken_stream_commits_nothing_and_rerun_converges(
    pg_warehouse: TestWarehouse,
    make_sim: Any,
    tmp_path: Path,
    clean_reference: Callable[[str], h.Snapshot],
    faults: Faults,
    cause: str,
) -> None:
    wh, cfg, site = pg_warehouse, h.config(tmp_path), h.Site(make_sim)
    wh.migrate()
    site.serve()
    h.preload(wh, site, cfg)
    before = h.snapshot(wh)
    assert before.watermark == h.MIDDLE_UTC and before.conversations > 0

    api = site.serve(faults=faults)
    result = h.run("run", "--until", h.UNTIL, wh=wh, site=site, config=cfg)

    assert result.code == 4, result.output  # ExitCode.UPSTREAM
    message = h.error_of(result)
    assert cause in message
    assert f"window {h.W2}" in message
    assert "gave up after 2 attempt(s)" in message and "run again later" in message
    assert api.export_requests == 2  # retry.max_attempts
    h.assert_same(h.snapshot(wh), before)  # nothing of window 2, watermark unmoved
    outcome, error, _ = h.runs(wh)[-1]
    assert outcome == "failed" and cause in (error or "")

    _converges(wh, site, cfg, clean_reference)


def test_error_element_once_is_retried_and_the_run_succeeds(
    warehouse: TestWarehouse,
    make_sim: Any,
    tmp_path: Path,
    clean_reference: Callable[[str], h.Snapshot],
) -> None:
    wh, cfg, site = warehouse, h.config(tmp_path), h.Site(make_sim)
    wh.migrate()
    site.serve()
    h.preload(wh, site, cfg)
    api = site.serve(faults=Faults(error_after=AFTER, error_times=1))

    result = h.run("run", "--until", h.UNTIL, wh=wh, site=site, config=cfg)

    assert result.code == 0, result.output
    (warning,) = [w for w in h.warnings_of(result) if "retrying" in w]
    assert f"window {h.W2}" in warning and "reported an error mid-stream" in warning
    assert api.export_requests == 2
    h.assert_same(h.snapshot(wh), clean_reference(wh.kind))
    assert [r[0] for r in h.runs(wh)] == ["ok", "ok"]  # the retried window is one ok row

    _converges(wh, site, cfg, clean_reference)
