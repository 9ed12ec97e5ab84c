"""Date windows: parsing of dates, durations and zones, and planning of half-open windows."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_DURATION = re.compile(r"^\s*(\d+)\s*(s|sec|m|min|h|d|w)\s*$", re.IGNORECASE)
_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclass(frozen=True, slots=True, order=True)
class Window:
    """A half-open time range `[start, end)` with aware datetimes."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("window bounds must be timezone-aware")
        if self.start >= self.end:
            raise ValueError(f"window start {self.start} is not before its end {self.end}")

    def __str__(self) -> str:
        return f"[{self.start.isoformat()}, {self.end.isoformat()})"


def parse_duration(text: str) -> timedelta:
    """`"1d"`, `"2h"`, `"30m"`, `"90s"` or `"1w"`.

    A bare number is refused, not read as seconds: `retention = 400` meant as days would
    otherwise prune everything older than 6 minutes 40 seconds.
    """
    if not isinstance(text, str):
        raise ValueError(
            f'{text!r} is not a duration: give it a unit, as text, e.g. "90s", "30m", '
            '"2h", "1d" or "1w"'
        )
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration: write e.g. 90s, 30m, 2h, 1d or 1w")
    try:
        return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2).lower()])
    except OverflowError:
        raise ValueError(f"{text!r} is longer than any duration this can hold") from None


def parse_zone(name: str) -> tzinfo:
    """An IANA zone name (`Europe/Oslo`) or `UTC`."""
    if not isinstance(name, str):
        raise ValueError(f'{name!r} is not a time zone name: write e.g. "Europe/Oslo" or "UTC"')
    if name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{name!r} is not a known time zone: use an IANA name such as UTC or Europe/Oslo"
        ) from None


def parse_instant(text: str | date | datetime, zone: tzinfo) -> datetime:
    """A date (midnight in `zone`), a date-time with offset, or a naive date-time read in `zone`."""
    if isinstance(text, datetime):
        value = text
    elif isinstance(text, date):
        value = datetime(text.year, text.month, text.day)
    elif not isinstance(text, str):
        raise ValueError(f"{text!r} is not a date or date-time: write 2024-03-25")
    else:
        raw = text.strip()
        try:
            value = datetime.fromisoformat(raw.replace("Z", "+00:00") if raw.endswith("Z") else raw)
        except ValueError:
            raise ValueError(
                f"{text!r} is not a date or date-time: write 2024-03-25 or 2024-03-25T06:00:00+01:00"
            ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    return value


def plan_windows(
    start: datetime, end: datetime, size: timedelta, *, grid: datetime | None = None
) -> Iterator[Window]:
    """Consecutive windows of `size` from `start`, the last one cut at `end`.

    With `grid`, windows end on its boundaries (`grid` + a whole number of `size`), the
    first one at the first boundary after `start`: a run that stopped at an odd time (its
    last window cut at now − lag) goes on with windows of the same grid as before.

    Arithmetic is done in UTC: wall-clock arithmetic in a zone with DST can produce
    empty or overlapping windows around the switch.
    """
    if size <= timedelta(0):
        raise ValueError("window size must be positive")
    cursor = start.astimezone(UTC)
    end = end.astimezone(UTC)
    grid = grid.astimezone(UTC) if grid is not None else None
    while cursor < end:
        if grid is None:
            nxt = cursor + size
        else:
            nxt = grid + ((cursor - grid) // size + 1) * size
        nxt = min(nxt, end)
        yield Window(cursor, nxt)
        cursor = nxt
