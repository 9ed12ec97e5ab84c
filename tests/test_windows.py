"""Window planning and date parsing, including the DST switch."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from etl.windows import Window, parse_duration, parse_instant, parse_zone, plan_windows

OSLO = parse_zone("Europe/Oslo")


def test_windows_are_contiguous_half_open_and_cut_at_end() -> None:
    start = datetime(2024, 3, 30, tzinfo=OSLO)
    end = datetime(2024, 4, 1, 12, tzinfo=OSLO)
    windows = list(plan_windows(start, end, timedelta(hours=7)))
    assert windows[0].start == start and windows[-1].end == end
    for a, b in itertools.pairwise(windows):
        assert a.end == b.start
    total = sum(((w.end - w.start) for w in windows), timedelta())
    # Same-zone subtraction in Python is wall-clock; the real span is 59 hours (one hour lost).
    assert total == end.astimezone(UTC) - start.astimezone(UTC)
    assert total == timedelta(hours=59)


def test_hourly_windows_over_dst_have_no_gap_or_overlap() -> None:
    start = parse_instant("2024-10-27", OSLO)
    end = parse_instant("2024-10-28", OSLO)
    windows = list(plan_windows(start, end, timedelta(hours=1)))
    assert len(windows) == 25  # the autumn day is 25 hours long
    assert all(w.end - w.start == timedelta(hours=1) for w in windows)


def test_parse_instant_forms() -> None:
    assert parse_instant("2024-03-25", UTC) == datetime(2024, 3, 25, tzinfo=UTC)
    assert parse_instant("2024-03-25T06:00:00+01:00", UTC) == datetime(2024, 3, 25, 5, tzinfo=UTC)
    assert parse_instant("2024-03-25T06:00:00Z", OSLO) == datetime(2024, 3, 25, 6, tzinfo=UTC)
    naive = parse_instant("2024-07-01T00:00:00", OSLO)
    assert naive.utcoffset() == timedelta(hours=2)
    with pytest.raises(ValueError, match="not a date"):
        parse_instant("last tuesday", UTC)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("30m", 1800), ("2h", 7200), ("1d", 86400), ("1w", 604800)],
)
def test_parse_duration(text: str | int, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


def test_bad_duration_and_window() -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("a day")
    with pytest.raises(ValueError, match="give it a unit"):
        parse_duration(400)  # type: ignore[arg-type] - a bare number from a config file
    with pytest.raises(ValueError, match="not before"):
        Window(datetime(2024, 1, 2, tzinfo=UTC), datetime(2024, 1, 1, tzinfo=UTC))
    with pytest.raises(ValueError, match="timezone-aware"):
        Window(datetime(2024, 1, 1), datetime(2024, 1, 2))


def test_windows_on_a_grid_end_on_its_boundaries_from_any_start() -> None:
    grid = parse_instant("2024-01-01", OSLO)  # pipeline.start: Oslo midnight, 23:00 UTC
    start = datetime(2024, 3, 29, 9, 17, 33, 250000, tzinfo=UTC)  # a watermark at now − lag
    end = parse_instant("2024-04-02", OSLO)
    windows = list(plan_windows(start, end, timedelta(days=1), grid=grid))
    assert windows[0] == Window(start, datetime(2024, 3, 29, 23, tzinfo=UTC))
    # Boundaries in UTC days from the grid, across the DST switch (as without a grid).
    assert [w.end for w in windows[1:-1]] == [
        datetime(2024, 3, 30, 23, tzinfo=UTC),
        datetime(2024, 3, 31, 23, tzinfo=UTC),
    ]
    assert windows[-1].end == end
    assert all(w.end - w.start <= timedelta(days=1) for w in windows)
    # A start on a boundary, and one before the grid's origin, keep to it too.
    on = list(plan_windows(grid, grid + timedelta(days=2), timedelta(days=1), grid=grid))
    assert [w.start for w in on] == [grid, grid + timedelta(days=1)]
    early = grid - timedelta(hours=5)
    assert next(plan_windows(early, end, timedelta(days=1), grid=grid)).end == grid
