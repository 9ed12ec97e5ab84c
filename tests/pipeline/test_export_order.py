"""Which copy wins, and what a window says it did, through `etl load-file` on both databases
(issue 14, "Why" 3, 5 and 7)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from sqlalchemy import select

from etl.load.schema import build_metadata
from tests.conftest import TestWarehouse
from tests.load.test_loaded_values import seed_elements
from tests.pipeline.cli_helpers import etl

CID = 1000001  # the seed example's conversation


def _export(path: Path, conversation: dict[str, Any], current_time: str | None) -> Path:
    query_info, _, post_query_info = seed_elements()
    if current_time is None:
        query_info.pop("current_time", None)
    else:
        query_info["current_time"] = current_time
    path.write_text(json.dumps([query_info, conversation, post_query_info]))
    return path


def _masked(conversation: dict[str, Any]) -> dict[str, Any]:
    masked = copy.deepcopy(conversation)
    for message in masked["messages"]:
        if isinstance(message.get("question"), dict):
            message["question"]["input"] = "*****"
    return masked


def _inputs(wh: TestWarehouse) -> list[Any]:
    messages = build_metadata(wh.schema).tables[
        f"{wh.schema}.messages" if wh.schema else "messages"
    ]
    engine = wh.engine()
    try:
        with engine.connect() as conn:
            query = select(messages.c.input).where(messages.c.input.is_not(None))
            return [row[0] for row in conn.execute(query)]
    finally:
        engine.dispose()


def _last_run(wh: TestWarehouse) -> dict[str, Any]:
    runs = build_metadata(wh.schema).tables[f"{wh.schema}.etl_runs" if wh.schema else "etl_runs"]
    engine = wh.engine()
    try:
        with engine.connect() as conn:
            row = conn.execute(select(runs).order_by(runs.c.id.desc()).limit(1)).mappings().one()
            return dict(row)
    finally:
        engine.dispose()


def test_a_file_without_an_export_time_does_not_bring_unmasked_text_back(
    migrated: TestWarehouse, tmp_path: Path
) -> None:
    _, seed, _ = seed_elements()
    masked = _export(tmp_path / "masked.json", _masked(seed), "2024-06-01T00:00:00+00:00")
    unmasked_undated = _export(tmp_path / "old.json", seed, None)
    etl("load-file", str(masked), wh=migrated, check=True)

    result = etl("load-file", str(unmasked_undated), wh=migrated, check=True)
    assert set(_inputs(migrated)) == {"*****"}
    assert "0 new, 0 changed, 0 unchanged, 1 older, 0 rejected" in result.output
    assert "has no query_info.current_time" in result.output
    assert "--replace" in result.output
    run = _last_run(migrated)
    assert (run["conversations_older"], run["conversations_changed"]) == (1, 0)

    etl("load-file", "--replace", str(unmasked_undated), wh=migrated, check=True)
    assert "*****" not in _inputs(migrated)
    assert _last_run(migrated)["conversations_changed"] == 1


def test_an_older_file_says_so_and_an_unchanged_reload_says_unchanged(
    migrated: TestWarehouse, tmp_path: Path
) -> None:
    _, seed, _ = seed_elements()
    newer = _export(tmp_path / "new.json", _masked(seed), "2024-06-01T00:00:00+00:00")
    older = _export(tmp_path / "old.json", seed, "2024-05-01T00:00:00+00:00")
    first = etl("load-file", str(newer), wh=migrated, check=True)
    assert "1 new, 0 changed, 0 unchanged, 0 older" in first.output
    again = etl("load-file", str(newer), wh=migrated, check=True)
    assert "0 new, 0 changed, 1 unchanged, 0 older" in again.output
    stale = etl("load-file", str(older), wh=migrated, check=True)
    assert "0 new, 0 changed, 0 unchanged, 1 older" in stale.output
    assert "from a later export" in stale.output
    assert set(_inputs(migrated)) == {"*****"}


def test_the_exports_own_elements_are_kept_with_the_window(
    migrated: TestWarehouse, tmp_path: Path
) -> None:
    query_info, seed, post_query_info = seed_elements()
    query_info["query"] = {"environment": "live", "only_masked": True}
    surprise = {"type": "statistics", "answers": 3, "nested": {"a": [1, 2]}}
    path = tmp_path / "export.json"
    path.write_text(json.dumps([query_info, seed, surprise, post_query_info]))
    result = etl("load-file", str(path), wh=migrated, check=True)
    assert "unknown type 'statistics'" in result.output
    run = _last_run(migrated)
    assert run["query_info"] == query_info
    assert run["post_query_info"] == post_query_info
    assert run["unknown_elements"] == [surprise]
    status = etl("status", "--json", wh=migrated, check=True)
    (latest, *_) = json.loads(status.stdout)["runs"]
    assert latest["unknown_elements"] == 1
    assert latest["conversation_outcomes"] == {
        "new": 1,
        "changed": 0,
        "unchanged": 0,
        "older": 0,
        "rejected": 0,
        "forgotten": 0,
    }


def test_a_file_without_a_usable_range_is_recorded_as_unknown(
    migrated: TestWarehouse, tmp_path: Path
) -> None:
    query_info, seed, post_query_info = seed_elements()
    query_info["interpreted_query_range"] = ["2024-03-25T00:00:00", "2024-03-26T00:00:00"]
    path = tmp_path / "naive.json"
    path.write_text(json.dumps([query_info, seed, post_query_info]))
    result = etl("load-file", str(path), wh=migrated, check=True)
    assert "interpreted_query_range is missing or not two date-times with a UTC offset" in (
        result.output
    )
    assert f"file {path} (range unknown) loaded" in result.output
    run = _last_run(migrated)
    assert (run["window_start"], run["window_end"], run["outcome"]) == (None, None, "ok")


def test_characters_postgresql_refuses_in_the_exports_own_elements(
    migrated: TestWarehouse, tmp_path: Path
) -> None:
    """NUL and a lone surrogate in query_info, post_query_info or an unknown element: the
    window loads on both databases, the run log keeps the exact text (found in review: the
    window failed on PostgreSQL, every run)."""
    query_info, seed, post_query_info = seed_elements()
    query_info["note"] = "a\u0000b"
    post_query_info["note"] = "\ud800"
    surprise = {"type": "statistics", "text": "x\u0000y"}
    path = tmp_path / "odd.json"
    path.write_text(json.dumps([query_info, seed, surprise, post_query_info]))  # ASCII escapes
    etl("load-file", str(path), wh=migrated, check=True)
    run = _last_run(migrated)
    assert json.loads(run["query_info"]["_original"]) == query_info
    assert json.loads(run["post_query_info"]["_original"]) == post_query_info
    assert json.loads(run["unknown_elements"]["_original"]) == [surprise]


def test_digits_finer_than_a_microsecond_are_cut_with_a_word(
    migrated: TestWarehouse, tmp_path: Path
) -> None:
    query_info, seed, post_query_info = seed_elements()
    first, second = copy.deepcopy(seed), copy.deepcopy(seed)
    second["id"] += 1
    for conversation in (first, second):  # the first is cut out by the splitter, the last not
        for message in conversation["messages"]:
            message["id"] += conversation["id"] * 100
    first["messages"][0]["time"] = "2021-01-28T17:20:48.812727123+01:00"
    first["time"]["created"] = "2021-01-28T17:20:48.8127271+01:00"
    second["messages"][1]["time"] = "2021-01-28T17:21:00.000000999Z"
    query_info["conversations"] = 2
    path = tmp_path / "nanos.json"
    path.write_text(json.dumps([query_info, first, second, post_query_info]))
    result = etl("load-file", str(path), wh=migrated, check=True)
    assert "3 times have digits finer than a microsecond" in result.output
    query_info["conversations"] = 1
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps([query_info, seed, post_query_info]))
    quiet = etl("load-file", str(plain), wh=migrated, check=True)
    assert "finer than a microsecond" not in quiet.output
