"""The two floors the project is measured against (variants a and b of the bench).

    python bench/floors.py parse FILE
        a. parse floor: ijson's C backend over the export file, counting conversations.
    python bench/floors.py load FILE --dsn postgresql://... --schema bench_floor
        b. load floor: the same parse, a minimal flatten into the project's five fact tables
           (conversations, messages, content, buttons, intent_analysis; a handful of columns
           each, the same row counts as the project's), and psycopg `COPY` into bare tables
           (no keys, no indexes, no upsert) in one transaction.

Each prints one JSON object on stdout: {"conversations": N, "rows": {table: n}}.
Files are `.json` or `.json.gz`: the array `[query_info, conversation..., post_query_info]`.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, cast

import ijson

BACKEND = "yajl2_c"
BATCH = 1000  # conversations per round of COPYs (the project's default batch size, too)

# Bare tables: a handful of columns each, no constraints. Timestamps go in as the API's ISO
# text and PostgreSQL parses them, as it would for any loader.
TABLES: dict[str, tuple[tuple[str, str], ...]] = {
    "conversations": (
        ("id", "bigint"),
        ("reference", "text"),
        ("environment", "text"),
        ("created_at", "timestamptz"),
        ("last_message_at", "timestamptz"),
        ("reviewed", "boolean"),
        ("message_count", "integer"),
    ),
    "messages": (
        ("id", "bigint"),
        ("conversation_id", "bigint"),
        ("position", "integer"),
        ("time", "timestamptz"),
        ("type", "text"),
        ("input", "text"),
        ("displayed_action_id", "bigint"),
    ),
    "content": (
        ("message_id", "bigint"),
        ("position", "integer"),
        ("conversation_id", "bigint"),
        ("type", "text"),
        ("text", "text"),
        ("url", "text"),
    ),
    "buttons": (
        ("message_id", "bigint"),
        ("content_position", "integer"),
        ("position", "integer"),
        ("conversation_id", "bigint"),
        ("button_id", "bigint"),
        ("text", "text"),
    ),
    "intent_analysis": (
        ("message_id", "bigint"),
        ("position", "integer"),
        ("conversation_id", "bigint"),
        ("processed", "text"),
        ("winner", "boolean"),
        ("intent_id", "bigint"),
    ),
}

Row = tuple[Any, ...]


def _open(path: Path) -> IO[bytes]:
    if path.suffix == ".gz":
        return cast(IO[bytes], gzip.open(path, "rb"))
    return path.open("rb")


def iter_conversations(path: Path) -> Iterator[dict[str, Any]]:
    """The conversations of an export file, streamed (the query_info items are skipped)."""
    backend = ijson.get_backend(BACKEND)
    with _open(path) as fh:
        for item in backend.items(fh, "item"):
            if item.get("type") == "conversation":
                yield item


def parse_floor(path: Path) -> dict[str, Any]:
    count = 0
    for _ in iter_conversations(path):
        count += 1
    return {"conversations": count}


def flatten(conv: dict[str, Any], out: dict[str, list[Row]]) -> None:
    """The minimal flatten: one row per conversation, message, content item, button, analysis."""
    cid = conv["id"]
    messages = conv.get("messages") or []
    times = conv.get("time") or {}
    out["conversations"].append(
        (
            cid,
            conv.get("reference"),
            conv.get("environment"),
            times.get("created"),
            times.get("last_message_created"),
            conv.get("reviewed"),
            len(messages),
        )
    )
    m_rows, c_rows, b_rows, a_rows = (
        out["messages"],
        out["content"],
        out["buttons"],
        out["intent_analysis"],
    )
    for position, msg in enumerate(messages):
        mid = msg["id"]
        question = msg.get("question") or {}
        displayed = (msg.get("actions") or {}).get("displayed") or {}
        m_rows.append(
            (
                mid,
                cid,
                position,
                msg.get("time"),
                msg.get("type"),
                question.get("input"),
                displayed.get("id"),
            )
        )
        for at, item in enumerate(msg.get("content") or ()):
            c_rows.append((mid, at, cid, item.get("type"), item.get("text"), item.get("url")))
            for b_at, button in enumerate(item.get("buttons") or ()):
                b_rows.append((mid, at, b_at, cid, button.get("id"), button.get("text")))
        for at, analysis in enumerate(question.get("analysis") or ()):
            intent = analysis.get("intent") or {}
            a_rows.append(
                (mid, at, cid, analysis.get("processed"), analysis.get("winner"), intent.get("id"))
            )


def load_floor(path: Path, dsn: str, schema: str) -> dict[str, Any]:
    import psycopg
    from psycopg import sql

    totals = dict.fromkeys(TABLES, 0)
    conversations = 0
    with psycopg.connect(dsn, autocommit=False) as conn:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
            for table, columns in TABLES.items():
                cur.execute(
                    sql.SQL("DROP TABLE IF EXISTS {}.{}").format(
                        sql.Identifier(schema), sql.Identifier(table)
                    )
                )
                cur.execute(
                    sql.SQL("CREATE TABLE {}.{} ({})").format(
                        sql.Identifier(schema),
                        sql.Identifier(table),
                        sql.SQL(", ").join(
                            sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(kind))
                            for name, kind in columns
                        ),
                    )
                )
            copy_sql = {
                table: sql.SQL("COPY {}.{} ({}) FROM STDIN").format(
                    sql.Identifier(schema),
                    sql.Identifier(table),
                    sql.SQL(", ").join(sql.Identifier(name) for name, _ in columns),
                )
                for table, columns in TABLES.items()
            }
            batch: dict[str, list[Row]] = {table: [] for table in TABLES}

            def flush() -> None:
                for table, rows in batch.items():
                    if not rows:
                        continue
                    with cur.copy(copy_sql[table]) as copy:
                        for row in rows:
                            copy.write_row(row)
                    totals[table] += len(rows)
                    rows.clear()

            pending = 0
            for conv in iter_conversations(path):
                flatten(conv, batch)
                conversations += 1
                pending += 1
                if pending >= BATCH:
                    flush()
                    pending = 0
            flush()
        conn.commit()
    return {"conversations": conversations, "rows": totals}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_parse = sub.add_parser("parse", help="a. ijson (yajl2_c) over the file, counting")
    p_parse.add_argument("file", type=Path)
    p_load = sub.add_parser("load", help="b. parse + minimal flatten + COPY, one transaction")
    p_load.add_argument("file", type=Path)
    p_load.add_argument("--dsn", required=True, help="libpq URL, e.g. postgresql://u@host/db")
    p_load.add_argument("--schema", default="bench_floor")
    args = parser.parse_args(argv)
    if args.command == "parse":
        result = parse_floor(args.file)
    else:
        result = load_floor(args.file, args.dsn, args.schema)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
