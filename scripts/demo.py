"""`make demo`: simulator on loopback → migrate → a week's backfill into SQLite → status."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ETL = [sys.executable, "-m", "etl"]
DATABASE = ROOT / "demo-warehouse.db"
TOKEN = "demo-token-not-a-secret"


def main() -> int:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{DATABASE}{suffix}").unlink(missing_ok=True)
    env = dict(os.environ, FAKE_API_TOKEN=TOKEN)
    server = subprocess.Popen(
        [
            *ETL,
            "fake-api",
            "--port",
            "0",
            "--start",
            "2024-03-25",
            "--days",
            "7",
            "--per-day",
            "200",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline().strip()
        if not line.startswith("fake-api listening on "):
            print(f"demo: the simulator did not start ({line!r})", file=sys.stderr)
            return 1
        url = line.rsplit(" ", 1)[-1]
        print(f"demo: simulator at {url}; warehouse {DATABASE.name}")
        env = dict(
            os.environ,
            ETL_API_URL=url,
            ETL_API_TOKEN=TOKEN,
            ETL_DATABASE_URL=f"sqlite:///{DATABASE}",
        )
        steps = [
            ["migrate"],
            ["backfill", "--from", "2024-03-25", "--to", "2024-04-01"],
            ["status"],
        ]
        for step in steps:
            print(f"\n$ etl {' '.join(step)}", flush=True)
            code = subprocess.call([*ETL, *step], env=env)
            if code != 0:
                print(f"demo: `etl {step[0]}` failed with exit code {code}", file=sys.stderr)
                return code
        print(
            f"\ndemo: done. The warehouse is {DATABASE.name} (SQLite); try:\n"
            f"  sqlite3 {DATABASE.name} 'select type, count(*) from messages group by 1'"
        )
        return 0
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
