"""Run in a subprocess by test_memory: stream one window and print peak RSS (KB) as JSON."""

from __future__ import annotations

import json
import resource
import sys
from datetime import datetime

from etl.config import ApiSettings
from etl.extract import ExportClient
from etl.secrets import Secret
from etl.windows import Window


def main() -> None:
    url, token, start, end = sys.argv[1:5]
    client = ExportClient(ApiSettings(url=url, token=Secret(token), read_timeout=60))
    window = Window(datetime.fromisoformat(start), datetime.fromisoformat(end))
    warm = 0
    count = 0
    with client.open(window) as stream:
        for _conversation in stream:
            count += 1
            if count == 2000:
                warm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(
            json.dumps(
                {
                    "count": count,
                    "expected": stream.expected,
                    "warm_kb": warm,
                    "peak_kb": peak,
                    "bytes": stream.bytes_received,
                }
            )
        )


if __name__ == "__main__":
    main()
