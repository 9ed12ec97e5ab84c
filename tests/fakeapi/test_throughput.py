"""Streaming throughput on loopback, printed (not asserted on time: machines differ)."""

from __future__ import annotations

import time
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import requests

from etl.fakeapi import Dataset, DatasetSpec, FakeApi, FakeApiOptions

OSLO = ZoneInfo("Europe/Oslo")


@pytest.fixture(scope="module")
def big() -> Dataset:
    return Dataset.build(DatasetSpec(days=5, per_day=2000))


@pytest.mark.parametrize("encoding", ["identity", "gzip"])
def test_throughput(big: Dataset, encoding: str) -> None:
    with FakeApi(FakeApiOptions(dataset=big)) as api:
        t0 = time.perf_counter()
        r = requests.post(
            api.url + "/api/export/v3",
            json={"from": "2024-03-25", "to": "2024-04-05"},
            headers={"Authorization": "Bearer sim-token", "Accept-Encoding": encoding},
            stream=True,
            timeout=60,
        )
        wire = 0
        for piece in r.raw.stream(1 << 16, decode_content=False):
            wire += len(piece)
        elapsed = time.perf_counter() - t0
        n = len(
            api.matching_ids(datetime(2024, 3, 25, tzinfo=OSLO), datetime(2024, 4, 5, tzinfo=OSLO))
        )
    print(
        f"\n{encoding}: {n} conversations, {wire / 1e6:.1f} MB on the wire in {elapsed:.2f} s: "
        f"{n / elapsed:,.0f} conversations/s, {wire / elapsed / 1e6:.0f} MB/s"
    )
    assert n > 8000 and wire > (40e6 if encoding == "identity" else 1e6)
