"""`make demo`: simulator on loopback → migrate → a week's backfill into SQLite → status →
the week's HTML report."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from etl.fakeapi.process import SimulatorDidNotStart, fake_api_process

ROOT = Path(__file__).resolve().parents[1]
ETL = [sys.executable, "-m", "etl"]
DATABASE = ROOT / "demo-warehouse.db"
REPORT = ROOT / "demo-report.html"
TOKEN = "demo-token-not-a-secret"


def main() -> int:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{DATABASE}{suffix}").unlink(missing_ok=True)
    dataset = ["--start", "2024-03-25", "--days", "7", "--per-day", "200"]
    try:
        with fake_api_process(*dataset, token=TOKEN) as url:
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
                ["report", "--from", "2024-03-25", "--to", "2024-04-01", "--out", str(REPORT)],
            ]
            for step in steps:
                print(f"\n$ etl {' '.join(step)}", flush=True)
                code = subprocess.call([*ETL, *step], env=env)
                if code != 0:
                    print(f"demo: `etl {step[0]}` failed with exit code {code}", file=sys.stderr)
                    return code
    except SimulatorDidNotStart as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    print(
        f"\ndemo: done. The warehouse is {DATABASE.name} (SQLite); try:\n"
        f"  sqlite3 {DATABASE.name} 'select type, count(*) from messages group by 1'\n"
        f"The week's report (one HTML file, opens offline): {REPORT}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
