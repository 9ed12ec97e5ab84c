"""Time helpers: epoch-microsecond arithmetic, ISO-8601 formatting and the API's from/to parsing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
US_PER_S = 1_000_000
US_PER_DAY = 86_400 * US_PER_S


def to_us(dt: datetime) -> int:
    """Epoch microseconds of an aware datetime (exact, no float rounding)."""
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError("naive datetime where an aware one is required")
    d = dt - EPOCH
    return (d.days * 86_400 + d.seconds) * US_PER_S + d.microseconds


def from_us(us: int, tz: tzinfo) -> datetime:
    """Aware datetime in `tz` for epoch microseconds."""
    return (EPOCH + timedelta(microseconds=us)).astimezone(tz)


_MINUTE_US = 60 * US_PER_S
_SECONDS = tuple(f"{i:02d}." for i in range(60))
_minutes: dict[tzinfo, dict[int, tuple[str, str]]] = {}


def _minute_prefix(tz: tzinfo, minute: int) -> tuple[str, str]:
    """("YYYY-MM-DDTHH:MM:", "+HH:MM") of a UTC minute in tz."""
    text = from_us(minute * _MINUTE_US, tz).isoformat(timespec="microseconds")
    return text[:17], text[26:]


def iso_us(us: int, tz: tzinfo) -> str:
    """ISO-8601 with microseconds and the offset `tz` has at that instant (cached per minute)."""
    minute, rem = divmod(us, _MINUTE_US)
    cache = _minutes.get(tz)
    if cache is None:
        cache = _minutes[tz] = {}
    hit = cache.get(minute)
    if hit is None:
        if len(cache) > 1_000_000:
            cache.clear()
        hit = cache[minute] = _minute_prefix(tz, minute)
        if len(hit[1]) != 6:  # an offset with seconds (historic LMT): no minute caching
            del cache[minute]
            return from_us(us, tz).isoformat(timespec="microseconds")
    return f"{hit[0]}{_SECONDS[rem // US_PER_S]}{rem % US_PER_S:06d}{hit[1]}"


def parse_iso_us(text: str) -> int:
    """Epoch microseconds of an ISO-8601 date-time with offset."""
    return to_us(datetime.fromisoformat(text))


def local_midnight_us(year: int, month: int, day: int, zone: ZoneInfo) -> int:
    """Epoch microseconds of local midnight of a day in `zone`."""
    return to_us(datetime(year, month, day, tzinfo=zone))


def offset_change_in(start_us: int, end_us: int, zone: tzinfo) -> int | None:
    """Instant (epoch us, second precision) where zone's offset changes in [start, end), if any."""
    off_start = from_us(start_us, zone).utcoffset()
    if from_us(end_us - 1, zone).utcoffset() == off_start:
        return None
    lo, hi = start_us // US_PER_S, (end_us - 1) // US_PER_S  # offset(lo)==start, offset(hi)!=
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if from_us(mid * US_PER_S, zone).utcoffset() == off_start:
            lo = mid
        else:
            hi = mid
    return hi * US_PER_S


class BoundError(ValueError):
    """A `from`/`to` value that cannot be read."""


def parse_bound(name: str, value: object, zone: tzinfo) -> datetime:
    """Read a `from`/`to` value: a date, a date-time with offset, or a naive date-time (in zone)."""
    if not isinstance(value, str):
        raise BoundError(f"'{name}' must be a string (date or ISO-8601 date-time)")
    text = value.strip()
    if len(text) < 10:
        raise BoundError(f"could not parse '{name}': {value!r} is not a date or date-time")
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise BoundError(
            f"could not parse '{name}': {value!r} is not a date or date-time"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=zone)
    return dt


def format_bound(dt: datetime, zone: tzinfo) -> str:
    """How the server echoes an interpreted bound: ISO-8601 in the server's offset."""
    return dt.astimezone(zone).isoformat()
