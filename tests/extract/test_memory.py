"""The client's memory stays flat however long the stream: measured in a separate process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from etl.fakeapi.process import fake_api_process

TOKEN = "memory-token-abcdef123456"


@pytest.mark.slow
def test_peak_rss_does_not_grow_with_the_stream(tmp_path: Path) -> None:
    # 60,000 small conversations in one window: ~25x the warm-up point below.
    dataset = ["--start", "2024-01-01", "--days", "3", "--per-day", "20000"]
    with fake_api_process(*dataset, "--messages-per-conversation", "2", token=TOKEN) as url:
        probe = Path(__file__).with_name("memory_probe.py")
        window = ["2023-12-31T00:00:00+00:00", "2024-01-10T00:00:00+00:00"]
        out = subprocess.run(
            [sys.executable, str(probe), url, TOKEN, *window],
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
    result = json.loads(out.stdout)
    assert result["count"] == result["expected"] >= 50_000
    growth_mb = (result["peak_kb"] - result["warm_kb"]) / 1024
    print(
        f"client peak RSS {result['peak_kb'] / 1024:.0f} MB, growth after warm-up {growth_mb:.1f} MB, "
        f"{result['bytes'] / 1e6:.0f} MB compressed"
    )
    assert growth_mb < 50
