"""`etl load-file` of a saved export that holds an in-stream error element: refused whole."""

from __future__ import annotations

import copy
import gzip
import json
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.conftest import SEED_EXPORT, TestWarehouse
from tests.pipeline.cli_helpers import etl


def count(wh: TestWarehouse, table: str, where: str = "1 = 1") -> int:
    engine = wh.engine()
    try:
        with engine.connect() as conn:
            sql = f"SELECT count(*) FROM {wh.table(table)} WHERE {where}"
            return int(conn.execute(text(sql)).scalar_one())
    finally:
        engine.dispose()


def test_error_element_in_an_otherwise_complete_export_loads_nothing(
    migrated: TestWarehouse, tmp_path: Path
) -> None:
    """Two conversations announced, two sent, post_query_info present, counts matching, and
    after them the API's error element: the file is refused and nothing of it is loaded."""
    query_info, conversation, post_query_info = json.loads(SEED_EXPORT.read_text())
    second = copy.deepcopy(conversation)
    second["id"] = 1000002
    for k, message in enumerate(second["messages"]):
        message["id"] = 2000000 + k
    query_info["conversations"] = post_query_info["conversations"] = 2
    path = tmp_path / "export.json"
    error = {"type": "error", "message": "shard 3 timed out"}
    path.write_text(json.dumps([query_info, conversation, second, error, post_query_info]))

    result = etl("load-file", str(path), wh=migrated)
    assert result.code == 5, result.output
    assert "reported an error mid-stream after 2 conversations: shard 3 timed out" in result.stderr
    assert str(path) in result.stderr
    assert count(migrated, "conversations") == count(migrated, "messages") == 0
    assert count(migrated, "etl_runs", "outcome = 'ok'") == 0


def test_a_conversation_the_normalizer_refuses_is_a_data_error_and_loads_nothing(
    migrated: TestWarehouse, tmp_path: Path
) -> None:
    """Exit code 5 (data error: not retried, not "a bug"), naming the file, the conversation
    and the field; the conversations before it in the file are rolled back with it."""
    query_info, conversation, post_query_info = json.loads(SEED_EXPORT.read_text())
    broken = copy.deepcopy(conversation)
    broken["id"] = 1000002
    for k, message in enumerate(broken["messages"]):
        message["id"] = 2000000 + k
    del broken["messages"][1]["id"]
    query_info["conversations"] = post_query_info["conversations"] = 2
    path = tmp_path / "export.json"
    path.write_text(json.dumps([query_info, conversation, broken, post_query_info]))

    result = etl("load-file", str(path), wh=migrated)
    assert result.code == 5, result.output
    assert "conversation 1000002, field 'messages[1].id'" in result.stderr
    assert str(path) in result.stderr
    assert "bug" not in result.stderr and "Traceback" not in result.output
    assert count(migrated, "conversations") == count(migrated, "messages") == 0


def test_a_refused_conversation_is_reported_over_a_stream_that_broke_after_it(
    migrated: TestWarehouse, tmp_path: Path
) -> None:
    """The conversation is not plain (a NUL in its text), so the loading process normalizes
    it while the worker reads on and meets the end of a file cut short: the data error, which
    came first, is the one reported."""
    query_info, conversation, _ = json.loads(SEED_EXPORT.read_text())
    broken = copy.deepcopy(conversation)
    broken["id"] = 1000002
    broken["reference"] = "nul\x00here"
    for k, message in enumerate(broken["messages"]):
        message["id"] = 2000000 + k
    broken["messages"][1]["id"] = "eleven"
    query_info["conversations"] = 2
    path = tmp_path / "export.json"
    path.write_text(json.dumps([query_info, conversation, broken]))  # no post_query_info

    result = etl("load-file", str(path), wh=migrated)
    assert result.code == 5, result.output
    assert "conversation 1000002, field 'messages[1].id'" in result.stderr, result.stderr
    assert "post_query_info" not in result.stderr
    assert count(migrated, "conversations") == 0


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("page.json", b"<html>Service unavailable</html>"),
        ("object.json", b'{"a": 1}'),
        ("empty-array.json", b"[]"),
        ("empty.json", b""),
        ("cut.json.gz", gzip.compress(SEED_EXPORT.read_bytes())[:40]),
    ],
    ids=["html", "object", "empty-array", "empty", "cut-gzip"],
)
def test_a_file_that_is_not_a_whole_export_is_a_data_error(
    migrated: TestWarehouse, tmp_path: Path, name: str, body: bytes
) -> None:
    """Exit 5 like a file cut short further in, not 4 ("the API kept failing, run again
    later"): reading the same file again gives the same."""
    path = tmp_path / name
    path.write_bytes(body)
    result = etl("load-file", str(path), wh=migrated)
    assert result.code == 5, result.output
    assert f"{path}: " in result.stderr
    assert "is not a whole Export API v3 body, nothing of it was loaded" in result.stderr
    assert "window is incomplete" not in result.stderr
    assert count(migrated, "conversations") == 0


def test_an_escaped_backslash_before_a_lone_surrogate_escape_loads(
    migrated: TestWarehouse, tmp_path: Path
) -> None:
    """`\\\\ud800` is a backslash and the text "ud800", so the `\\udc00` after it is a lone
    surrogate: the fast parser took the two for a pair, then failed on every attempt."""
    query_info, conversation, post_query_info = json.loads(SEED_EXPORT.read_text())
    text_in = "regex \\ud800\udc00 end"
    conversation["messages"][1]["question"]["input"] = text_in
    path = tmp_path / "export.json"
    path.write_text(json.dumps([query_info, conversation, post_query_info]))  # ASCII escapes
    assert b'"regex \\\\ud800\\udc00 end"' in path.read_bytes()

    result = etl("load-file", str(path), wh=migrated)
    assert result.code == 0, result.output
    engine = migrated.engine()
    try:
        with engine.connect() as conn:
            stored = conn.execute(
                text(
                    f"SELECT input, extra FROM {migrated.table('messages')} WHERE input LIKE 'regex%'"
                )
            ).one()
    finally:
        engine.dispose()
    # The column holds U+FFFD for the lone surrogate; `extra` keeps the exact original.
    assert stored[0] == "regex \\ud800\ufffd end"
    assert "udc00" in json.dumps(stored[1])


def test_a_parse_error_does_not_quote_the_exports_text(
    migrated: TestWarehouse, tmp_path: Path
) -> None:
    """The message is stored in etl_runs, which `etl forget` does not reach: it names the
    problem, not the text the parser stopped at (what an end user wrote)."""
    body = (
        b'[{"type":"query_info","conversations":1},{"type":"conversation","id":1,"messages":'
        b'[{"id":2,"type":"question","question":{"input":"my card is 4929 8812 \x01 ok"}}]}]'
    )
    path = tmp_path / "broken.json"
    path.write_bytes(body)
    result = etl("load-file", str(path), wh=migrated)
    assert result.code == 5, result.output
    assert "not valid JSON" in result.stderr
    assert "4929" not in result.output and "my card" not in result.output
