"""Variant d of the bench: a dlt pipeline loading the same export file into the same PostgreSQL.

    python bench/dlt_variant.py FILE --default|--tuned --schema NAME --pipelines-dir DIR \
        [--dsn postgresql://postgres@127.0.0.1:5432/test]

--default: an ijson generator as a `@dlt.resource`, one conversation per item,
           `write_disposition="merge"`, `primary_key="id"`, default nested normalization
           (child tables for messages, content, buttons, ...), default loader files.
--tuned:   the same resource yielding pages of 1,000 conversations as lists, 2 normalize
           workers, CSV loader files (`loader_file_format="csv"`).

--api URL --token T --from DAY --to DAY: instead of a file, the export server itself, one POST
           per day in UTC (as `etl backfill --window 1d` asks), one after the other, each body
           streamed through ijson: the plain way to write a dlt source for an HTTP export.

Run it twice with the same --pipelines-dir and --schema to measure a re-run over loaded data.
Prints one JSON object on stdout: {"conversations": N, "load_id": ..., "tables": [...]}.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import IO, Any, cast
from urllib.parse import urlsplit

PAGE = 1000


def _open(path: Path) -> IO[bytes]:
    if path.suffix == ".gz":
        return cast(IO[bytes], gzip.open(path, "rb"))
    return path.open("rb")


def _configure(dsn: str, pipelines_dir: Path, tuned: bool) -> None:
    """dlt reads its configuration from the environment: set it before importing dlt."""
    os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"
    os.environ["DESTINATION__POSTGRES__CREDENTIALS"] = dsn
    if urlsplit(dsn).password is None:
        # dlt insists on a password even where the server does not ask for one (trust auth,
        # .pgpass): give it a placeholder, which the server then ignores.
        os.environ.setdefault("DESTINATION__POSTGRES__CREDENTIALS__PASSWORD", "unused")
    # Keep dlt's global dir (and anything it writes there) out of the user's home.
    os.environ.setdefault("DLT_DATA_DIR", str(pipelines_dir / "_dlt_data"))
    os.environ["RUNTIME__LOG_LEVEL"] = "WARNING"
    if tuned:
        os.environ["NORMALIZE__WORKERS"] = "2"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file", type=Path, nargs="?")
    parser.add_argument("--api", help="the export server's base URL (instead of a file)")
    parser.add_argument("--token", default="", help="its bearer token")
    parser.add_argument("--from", dest="from_", help="first UTC day, with --api")
    parser.add_argument("--to", help="UTC day after the last, with --api")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--tuned", dest="tuned", action="store_true")
    mode.add_argument("--default", dest="tuned", action="store_false")
    parser.add_argument("--schema", default="bench_dlt", help="dlt dataset (PostgreSQL schema)")
    parser.add_argument("--pipelines-dir", type=Path, default=None)
    parser.add_argument(
        "--dsn",
        default=os.environ.get(
            "DESTINATION__POSTGRES__CREDENTIALS", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    args = parser.parse_args(argv)

    pipelines_dir: Path = args.pipelines_dir or Path(tempfile.mkdtemp(prefix="bench-dlt-"))
    pipelines_dir.mkdir(parents=True, exist_ok=True)
    _configure(args.dsn, pipelines_dir, args.tuned)

    import dlt
    import ijson

    if (args.file is None) == (args.api is None):
        parser.error("give either FILE or --api (with --from and --to)")
    path: Path = args.file
    counted = {"conversations": 0}

    def from_file() -> Iterator[dict[str, Any]]:
        with _open(path) as fh:
            yield from ijson.get_backend("yajl2_c").items(fh, "item")

    def from_api() -> Iterator[dict[str, Any]]:
        import requests

        day, end = date.fromisoformat(args.from_), date.fromisoformat(args.to)
        with requests.Session() as session:
            while day < end:
                after = day + timedelta(days=1)
                response = session.post(
                    args.api.rstrip("/") + "/api/export/v3",
                    json={"from": f"{day}T00:00:00+00:00", "to": f"{after}T00:00:00+00:00"},
                    headers={"Authorization": f"Bearer {args.token}", "Accept-Encoding": "gzip"},
                    stream=True,
                    timeout=300,
                )
                response.raise_for_status()
                response.raw.decode_content = True
                yield from ijson.get_backend("yajl2_c").items(response.raw, "item")
                day = after

    def items() -> Iterator[dict[str, Any]]:
        for item in from_api() if args.api else from_file():
            if item.get("type") == "conversation":
                counted["conversations"] += 1
                yield item

    def pages() -> Iterator[list[dict[str, Any]]]:
        page: list[dict[str, Any]] = []
        for item in items():
            page.append(item)
            if len(page) >= PAGE:
                yield page
                page = []
        if page:
            yield page

    # One hint, the same the project applies: a `json` content item is a free-form document and
    # is stored as one JSON column. Flattened, it yields integers beyond BIGINT (the simulator
    # sends 12345678901234567890 on purpose) and PostgreSQL refuses the whole load.
    json_content = dlt.mark.make_nested_hints(columns=[{"name": "json", "data_type": "json"}])

    @dlt.resource(
        name="conversations",
        write_disposition="merge",
        primary_key="id",
        nested_hints={
            ("messages",): dlt.mark.make_nested_hints(),
            ("messages", "content"): json_content,
        },
    )
    def conversations() -> Iterator[Any]:
        yield from (pages() if args.tuned else items())

    pipeline = dlt.pipeline(
        pipeline_name=f"bench_{args.schema}",
        destination="postgres",
        dataset_name=args.schema,
        pipelines_dir=str(pipelines_dir),
    )
    if args.tuned:
        info = pipeline.run(conversations(), loader_file_format="csv")
    else:
        info = pipeline.run(conversations())
    info.raise_on_failed_jobs()
    tables = sorted(
        name for name in pipeline.default_schema.data_table_names() if not name.startswith("_dlt")
    )
    result = {
        "conversations": counted["conversations"],
        "load_id": info.loads_ids[-1] if info.loads_ids else None,
        "tables": tables,
        "dlt_version": dlt.__version__,
    }
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
