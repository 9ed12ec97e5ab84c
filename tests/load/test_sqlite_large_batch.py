"""SQLite: a batch larger than one id list is merged whole (the loader splits its `IN (...)` id
lists below the bound-variable limit; an off-by-one there leaves stale rows behind and fails a
reload on a UNIQUE constraint). Through `etl load-file`, one batch of ~1,900 conversations.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from sqlalchemy import text

from tests.conftest import SEED_EXPORT, TestWarehouse, dump_tables
from tests.pipeline.cli_helpers import etl, write_config

N = 1900  # more than two of the loader's id chunks, all in one batch (batch_size below)
FIRST_ID = 5_000_000
SEED: dict[str, Any] = json.loads(SEED_EXPORT.read_text())[1]


def conversation(n: int, *, version: int) -> dict[str, Any]:
    """The seed example (less its biggest answer) as conversation `n`, with its own ids.

    Version 2 changes every text and drops the last message, so a copy of version 1 left
    behind shows up as extra rows, not only as a collision.
    """
    conv: dict[str, Any] = copy.deepcopy(SEED)
    conv["messages"] = [m for m in conv["messages"] if m["id"] != 1000005]
    conv["id"] = FIRST_ID + n
    conv["reference"] = f"ref-{n}"
    for k, message in enumerate(conv["messages"]):
        message["id"] = (FIRST_ID + n) * 10 + k
        for item in message.get("content", []):
            if "text" in item:
                item["text"] = f"<p>v{version} of {n}: {item['text']}</p>"
    if version == 2:
        conv["messages"] = conv["messages"][:-1]
        conv["time"]["last_message_created"] = conv["messages"][-1]["time"]
    return conv


def write_export(path: Path, version: int, current_time: str) -> Path:
    conversations = [conversation(n, version=version) for n in range(N)]
    elements = [
        {
            "type": "query_info",
            "interpreted_query_range": ["2021-01-01T00:00:00+01:00", "2022-01-01T00:00:00+01:00"],
            "current_time": current_time,
            "query": {"environment": "live", "from": "2021-01-01", "to": "2022-01-01"},
            "conversations": N,
        },
        *conversations,
        {"type": "post_query_info", "conversations": N},
    ]
    path.write_text(json.dumps(elements))
    return path


def counts(wh: TestWarehouse) -> dict[str, int]:
    engine = wh.engine()
    try:
        with engine.connect() as conn:
            return {
                name: conn.execute(text(f"SELECT count(*) FROM {wh.table(name)}")).scalar_one()
                for name in ("conversations", "messages", "content", "buttons", "intent_analysis")
            }
    finally:
        engine.dispose()


def test_reload_of_a_big_changed_batch_leaves_no_stale_rows(tmp_path: Path) -> None:
    first = write_export(tmp_path / "first.json", 1, "2021-02-01T00:00:00+01:00")
    second = write_export(tmp_path / "second.json", 2, "2021-03-01T00:00:00+01:00")
    config = write_config(tmp_path, warehouse={"batch_size": 5000})
    reloaded = TestWarehouse("sqlite", f"sqlite:///{tmp_path / 'reloaded.db'}", None)
    clean = TestWarehouse("sqlite", f"sqlite:///{tmp_path / 'clean.db'}", None)
    for wh in (reloaded, clean):
        etl("migrate", wh=wh, config=config, check=True)

    etl("load-file", str(first), wh=reloaded, config=config, check=True)
    assert counts(reloaded) == {
        "conversations": N,
        "messages": 3 * N,
        "content": 4 * N,
        "buttons": N,
        "intent_analysis": N,
    }
    etl("load-file", str(second), wh=reloaded, config=config, check=True)
    etl("load-file", str(second), wh=clean, config=config, check=True)

    expected = {
        "conversations": N,
        "messages": 2 * N,
        "content": 2 * N,  # the dropped last message had 2 content items and the button
        "buttons": 0,
        "intent_analysis": N,
    }
    assert counts(clean) == expected
    assert counts(reloaded) == expected
    engine = reloaded.engine()
    try:
        with engine.connect() as conn:
            stale = conn.execute(
                text("SELECT count(*) FROM content WHERE text LIKE '<p>v1 of %'")
            ).scalar_one()
    finally:
        engine.dispose()
    assert stale == 0
    # Row for row the same as the clean load (the intents/actions dimensions keep the latest
    # sighting of each id across loads by design, so they legitimately differ).
    per_conversation = {"conversations", "messages", "content", "buttons", "intent_analysis"}
    got, want = dump_tables(reloaded), dump_tables(clean)
    assert {t: got[t] for t in per_conversation} == {t: want[t] for t in per_conversation}
