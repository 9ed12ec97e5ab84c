"""Write a dataset as the export file the API would send for its whole range (.json / .json.gz)."""

from __future__ import annotations

import json
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from etl.fakeapi.dataset import Dataset
from etl.fakeapi.export import ExportResponse, parse_query
from etl.fakeapi.stream import BodyWriter, Encoder, FileSink, Identity, Zlib, write_array
from etl.fakeapi.timefmt import from_us, to_us


def whole_range(dataset: Dataset, zone: ZoneInfo) -> tuple[date, date]:
    """First and day-after-last local dates of the dataset's end-user interactions."""
    first, last = dataset.interaction_span_us()
    return from_us(first, zone).date(), from_us(last, zone).date() + timedelta(days=1)


def save_export(
    dataset: Dataset,
    path: str | Path,
    zone: str = "Europe/Oslo",
    now: datetime | None = None,
    environment: str = "live",
) -> int:
    """Write `[query_info, conversation..., post_query_info]` for the whole range; returns count."""
    tz = ZoneInfo(zone)
    start, end = whole_range(dataset, tz)
    body = {"from": start.isoformat(), "to": end.isoformat(), "environment": environment}
    query = parse_query(json.dumps(body).encode(), tz)
    if now is not None and now.tzinfo is None:
        now = now.replace(tzinfo=tz)
    now_us = int(time.time() * 1_000_000) if now is None else to_us(now)
    stream = ExportResponse(dataset, query, tz, now_us)
    p = Path(path)
    encoder: Encoder = Zlib("gzip", level=6) if p.name.endswith(".gz") else Identity()
    tmp = p.with_name(p.name + ".part")
    with tmp.open("wb") as fh:
        writer = BodyWriter(encoder, FileSink(fh))
        write_array(stream.items(), writer)
        writer.finish()
    tmp.replace(p)
    return stream.sent
