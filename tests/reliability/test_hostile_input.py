"""Hostile and bad input (issue group 8), through `etl load-file` of crafted export files.

Every input is either stored without loss (and a second load changes nothing), or refused with
exit code 5 and a message naming the file, the conversation and the cause, in which case nothing
of the file is stored and loading the corrected file gives what a clean load gives.

The rules the stored cases pin (README "What happens when things fail", docs/schema.md):
duplicate keys: the last one wins (as in json.loads); the same conversation twice in one file or
window: one row, the later copy wins; NUL and lone surrogates: U+FFFD in the column, the exact
original in `extra._original` as JSON text; integers beyond 64 bits in JSON values: kept exactly
(up to 10,000 digits); unknown message and content types: stored with their type, unknown
fields in `extra`; SQL-looking text: stored verbatim.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from etl.load.schema import build_metadata
from tests.conftest import SEED_EXPORT, TestWarehouse
from tests.reliability import helpers as h

pytestmark = pytest.mark.reliability

SEED = json.loads(SEED_EXPORT.read_text())
QUERY_INFO, SEED_CONVERSATION, POST_QUERY_INFO = SEED[0], SEED[1], SEED[-1]
GOOD_IDS = list(range(2_000_001, 2_000_009))  # eight conversations: the 7th is the broken one
BROKEN = GOOD_IDS[6]  # with batch_size 5, one batch is already written when it is met


def conversation(cid: int) -> dict[str, Any]:
    """The documented example conversation under a new id, with message ids of its own."""
    conv = copy.deepcopy(SEED_CONVERSATION)
    conv["id"] = cid
    for i, message in enumerate(conv["messages"]):
        message["id"] = cid * 100 + i
    return conv


def export_bytes(parts: list[bytes | dict[str, Any]]) -> bytes:
    """A saved export: query_info, the conversations (objects or raw JSON bytes), post_query_info."""
    head = dict(QUERY_INFO, conversations=len(parts))
    tail = dict(POST_QUERY_INFO, conversations=len(parts))
    body = [p if isinstance(p, bytes) else json.dumps(p).encode() for p in parts]
    return b"[" + b",".join([json.dumps(head).encode(), *body, json.dumps(tail).encode()]) + b"]"


def write(tmp_path: Path, name: str, parts: list[bytes | dict[str, Any]]) -> Path:
    path = tmp_path / name
    path.write_bytes(export_bytes(parts))
    return path


def good_parts() -> list[bytes | dict[str, Any]]:
    return [conversation(cid) for cid in GOOD_IDS]


def load(wh: TestWarehouse, tmp_path: Path, *paths: Path) -> h.Result:
    cfg = h.config(tmp_path)
    return h.run("load-file", *(str(p) for p in paths), wh=wh, config=cfg, timeout=300)


@pytest.fixture(scope="module")
def good_reference(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, clean_reference: Any
) -> Iterator[Callable[[TestWarehouse], h.Snapshot]]:
    """What a clean load of the good file gives, per warehouse kind (built once per kind)."""
    cache: dict[str, h.Snapshot] = {}

    def reference(wh: TestWarehouse) -> h.Snapshot:
        if wh.kind not in cache:
            tmp = tmp_path_factory.mktemp("good")
            ref = TestWarehouse("sqlite", f"sqlite:///{tmp / 'good.db'}", None)
            if wh.kind == "postgres":
                ref = TestWarehouse("postgres", wh.url, wh.schema)  # filled, compared, emptied
            ref.migrate() if ref.kind == "sqlite" else None
            good = write(tmp, "good.json", good_parts())
            if ref.kind == "sqlite":
                assert load(ref, tmp, good).code == 0
                cache[wh.kind] = h.snapshot(ref)
            else:
                admin_url = request.getfixturevalue("pg_server")  # up: `wh` is on it
                return _pg_reference(admin_url, wh, tmp, good, cache)
        return cache[wh.kind]

    yield reference


def _pg_reference(
    admin_url: str, wh: TestWarehouse, tmp: Path, good: Path, cache: dict[str, h.Snapshot]
) -> h.Snapshot:
    import secrets

    from sqlalchemy import create_engine, text

    schema = f"t_good_{secrets.token_hex(4)}"
    admin = create_engine(admin_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        ref = TestWarehouse("postgres", wh.url, schema)
        ref.migrate()
        assert load(ref, tmp, good).code == 0
        cache["postgres"] = h.snapshot(ref)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
    return cache["postgres"]


# -- refused: exit 5, nothing stored, the corrected file converges ---------------------------------


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def _raw(conv: dict[str, Any], old: bytes, new: bytes) -> bytes:
    text = json.dumps(conv).encode()
    assert text.count(old) == 1, old
    return text.replace(old, new)


def _broken(case: str) -> tuple[bytes | dict[str, Any], str]:
    """The broken 7th conversation for `case`, and what the error message must say."""
    conv = conversation(BROKEN)
    if case == "id-as-string":
        conv["id"] = str(BROKEN)
        return conv, f"no integer id (got '{BROKEN}')"
    if case == "messages-as-object":
        conv["messages"] = {"0": conv["messages"][0]}
        return conv, f"conversation {BROKEN}, field 'messages': messages must be a list, got dict"
    if case == "missing-id":
        del conv["id"]
        return conv, "no integer id (got None)"
    if case == "message-missing-id":
        del conv["messages"][1]["id"]
        return conv, f"conversation {BROKEN}, field 'messages[1].id'"
    if case == "nan":
        return _raw(conv, b'"reviewed": false', b'"reviewed": NaN'), "NaN and Infinity are not JSON"
    if case == "infinity":
        raw = _raw(conv, b'"json": {"some": "json"}', b'"json": {"some": Infinity}')
        return raw, "NaN and Infinity are not JSON"
    if case == "invalid-utf8":
        raw = _raw(conv, b"<p>Hi!</p>", b"<p>Hi\xff\xfe!</p>")
        return raw, "invalid bytes in UTF8 string"
    if case == "nested-10000-levels":
        raw = _raw(conv, b'"json": {"some": "json"}', b'"json": ' + _nested(10_000))
        return raw, f"conversation {BROKEN}: a value in it is nested too deeply"
    if case == "integer-of-20000-digits":
        raw = _raw(conv, b'"json": {"some": "json"}', b'"json": {"n": ' + b"7" * 20_000 + b"}")
        return raw, "an integer of 20,000 digits"
    if case == "number-beyond-a-double":  # valid JSON, but neither parser can hold it
        raw = _raw(conv, b'"json": {"some": "json"}', b'"json": {"n": 1e400}')
        return raw, "a number beyond the range of a double-precision float"
    if case == "negative-number-beyond-a-double-in-a-re-read":
        # The 70-bit integer has the file re-read by ijson's pure-Python parser, which reads
        # -1e400 as -inf where it refuses 1e400.
        big = b'"json": {"big": ' + str(2**70).encode() + b', "n": -1e400}'
        raw = _raw(conv, b'"json": {"some": "json"}', big)
        return raw, f"conversation {BROKEN}: a number in it is not finite"
    raise AssertionError(case)


REFUSED = [
    "id-as-string",
    "messages-as-object",
    "missing-id",
    "message-missing-id",
    "nan",
    "infinity",
    "invalid-utf8",
    "nested-10000-levels",
    "integer-of-20000-digits",
    "number-beyond-a-double",
    "negative-number-beyond-a-double-in-a-re-read",
]


@pytest.mark.parametrize("case", REFUSED)
def test_bad_input_is_refused_whole_and_the_corrected_file_converges(
    pg_warehouse: TestWarehouse,
    tmp_path: Path,
    good_reference: Callable[[TestWarehouse], h.Snapshot],
    case: str,
) -> None:
    wh = pg_warehouse
    wh.migrate()
    parts = good_parts()
    parts[6], cause = _broken(case)
    bad = write(tmp_path, f"{case}.json", parts)
    before = h.snapshot(wh)

    result = load(wh, tmp_path, bad)

    assert result.code == 5, result.output  # ExitCode.DATA
    message = h.error_of(result)
    assert cause in message, message
    assert str(bad) in message, message  # names the file
    assert "Traceback" not in result.output
    h.assert_same(h.snapshot(wh), before)  # nothing of the file, not even the first batch

    good = write(tmp_path, "corrected.json", good_parts())
    again = load(wh, tmp_path, good)
    assert again.code == 0, again.output
    h.assert_same(h.snapshot(wh), good_reference(wh))


# Broken conversations in a sound stream: with pipeline.on_bad_conversation = "quarantine" the
# rest of the file loads and the broken one is kept whole in etl_rejects.
QUARANTINED = ["id-as-string", "messages-as-object", "missing-id", "message-missing-id",
               "nested-10000-levels"]  # fmt: skip


@pytest.mark.parametrize("case", QUARANTINED)
def test_with_quarantine_a_broken_conversation_is_kept_aside_and_the_rest_loads(
    pg_warehouse: TestWarehouse, tmp_path: Path, case: str
) -> None:
    wh = pg_warehouse
    wh.migrate()
    parts = good_parts()
    parts[6], cause = _broken(case)
    bad = write(tmp_path, f"{case}.json", parts)
    cfg = h.config(tmp_path)
    result = h.run(
        "load-file", "--on-bad-conversation", "quarantine", str(bad), wh=wh, config=cfg, timeout=300
    )
    assert result.code == 0, result.output
    assert f"{len(GOOD_IDS) - 1} new, 0 changed, 0 unchanged, 0 older, 1 rejected" in result.output
    metadata = build_metadata(wh.schema)
    conversations = metadata.tables[f"{wh.schema}.conversations"]
    rejects = metadata.tables[f"{wh.schema}.etl_rejects"]
    engine = wh.engine()
    try:
        with engine.connect() as conn:
            loaded = set(conn.execute(select(conversations.c.id)).scalars())
            (reject,) = conn.execute(select(rejects)).mappings().all()
    finally:
        engine.dispose()
    assert loaded == set(GOOD_IDS) - {BROKEN}
    assert reject["position"] == 6 and cause.split(": ")[-1][:30] in reject["error"]
    if isinstance(parts[6], bytes) and case != "nested-10000-levels":
        assert reject["body"].encode() == parts[6]  # the text as the file held it


# -- stored: nothing lost, nothing foreign executed, a second load changes nothing ------------------

SQL_TEXT = "Robert'); DROP TABLE conversations; --"
SQL_KEY = 'k"); DELETE FROM messages; --'
BIG_STRING_BYTES = 50 * 1024 * 1024


def _stored_cases() -> tuple[list[list[bytes | dict[str, Any]]], dict[str, int]]:
    """Three files: most cases; the big integer (its file is re-read by the slower pure-Python
    parser); the 50 MB string."""
    parts: list[bytes | dict[str, Any]] = []
    ids: dict[str, int] = {}
    files = [parts]

    def add(name: str, part: bytes | dict[str, Any], cid: int) -> None:
        ids[name] = cid
        parts.append(part)

    conv = conversation(3_000_001)
    raw = json.dumps(conv).encode()
    raw = raw[:-1] + b', "reference": "the later key wins"}'  # a duplicate key, last one wins
    add("duplicate-key", raw, 3_000_001)

    conv = conversation(3_000_002)
    conv["user_information"] = {"big": 1}
    files.append([_raw(conv, b'{"big": 1}', b'{"big": ' + b"9" * 5_000 + b"}")])
    ids["big-integer"] = 3_000_002

    conv = conversation(3_000_003)
    conv["reference"] = "lone \ud800 surrogate"
    add("lone-surrogate", conv, 3_000_003)

    conv = conversation(3_000_004)
    conv["messages"][0]["content"][0]["text"] = "before\x00after"
    add("nul", conv, 3_000_004)

    first = conversation(3_000_005)
    first["reference"] = "the earlier copy"
    later = conversation(3_000_005)
    later["reference"] = "the later copy"
    later["messages"] = later["messages"][:2]
    add("twice-earlier", first, 3_000_005)
    parts.extend(conversation(cid) for cid in range(3_000_101, 3_000_106))  # another batch
    add("twice-later", later, 3_000_005)

    conv = conversation(3_000_006)
    conv["messages"][0]["type"] = "hologram"
    conv["messages"][0]["beam"] = {"colour": "blue"}
    conv["messages"][2]["content"][1] = {"type": "carousel", "slides": [1, 2, 3]}
    add("unknown-types", conv, 3_000_006)

    conv = conversation(3_000_007)
    conv["reference"] = SQL_TEXT
    conv["messages"][0]["content"][0]["text"] = "$$; SELECT pg_sleep(10); $$ \\copy x to '/tmp/x'"
    conv["user_information"] = {SQL_KEY: "' OR '1'='1"}
    add("sql-looking", conv, 3_000_007)

    conv = conversation(3_000_008)
    conv["reviewed"] = "yes"  # the wrong type for a boolean column: kept in extra
    add("misfit-type", conv, 3_000_008)

    conv = conversation(3_000_009)
    conv["messages"][0]["content"][0]["text"] = "x" * BIG_STRING_BYTES
    files.append([conv])
    ids["string-50MB"] = 3_000_009
    return files, ids


def _value(wh: TestWarehouse, table: str, column: str, **where: Any) -> Any:
    from etl.load.schema import build_metadata

    metadata = build_metadata(wh.schema)
    t = metadata.tables[f"{wh.schema}.{table}" if wh.schema else table]
    query = select(t.c[column]).where(*(t.c[k] == v for k, v in where.items()))
    engine = wh.engine()
    try:
        with engine.connect() as conn:
            rows = conn.execute(query).scalars().all()
    finally:
        engine.dispose()
    assert len(rows) == 1, (table, column, where, len(rows))
    return rows[0]


@pytest.fixture
def long_integers() -> Iterator[None]:
    """Let this process read back the 5,000-digit integer (Python stops at 4,300 by default)."""
    import sys

    limit = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(20_000)
    yield
    sys.set_int_max_str_digits(limit)


def test_hostile_but_valid_input_is_stored_without_loss(
    warehouse: TestWarehouse, tmp_path: Path, long_integers: None
) -> None:
    wh = warehouse
    wh.migrate()
    files, ids = _stored_cases()
    paths = [write(tmp_path, f"hostile-{i}.json", parts) for i, parts in enumerate(files)]

    result = load(wh, tmp_path, *paths)

    assert result.code == 0, result.output[-3000:]
    first = h.snapshot(wh)
    conversations = {r[0] for r in h.query(wh, f"SELECT id FROM {wh.table('conversations')}")}
    assert conversations == {*ids.values(), *range(3_000_101, 3_000_106)}  # one row per id

    def value(table: str, column: str, **where: Any) -> Any:
        return _value(wh, table, column, **where)

    assert value("conversations", "reference", id=ids["duplicate-key"]) == "the later key wins"

    stored = value("conversations", "user_information", id=ids["big-integer"])
    assert stored == {"big": int("9" * 5_000)}

    cid = ids["lone-surrogate"]
    assert value("conversations", "reference", id=cid) == "lone \ufffd surrogate"
    extra = value("conversations", "extra", id=cid)
    assert json.loads(extra["_original"]["reference"]) == "lone \ud800 surrogate"

    cid = ids["nul"]
    assert value("content", "text", message_id=cid * 100, position=0) == "before\ufffdafter"
    extra = value("content", "extra", message_id=cid * 100, position=0)
    assert json.loads(extra["_original"]["text"]) == "before\x00after"

    cid = ids["twice-later"]
    assert value("conversations", "reference", id=cid) == "the later copy"
    assert value("conversations", "message_count", id=cid) == 2
    messages = h.query(wh, f"SELECT id FROM {wh.table('messages')} WHERE conversation_id = {cid}")
    assert sorted(m[0] for m in messages) == [cid * 100, cid * 100 + 1]

    cid = ids["unknown-types"]
    assert value("messages", "type", id=cid * 100) == "hologram"
    assert value("messages", "extra", id=cid * 100)["beam"] == {"colour": "blue"}
    assert value("content", "type", message_id=cid * 100 + 2, position=1) == "carousel"
    assert value("content", "extra", message_id=cid * 100 + 2, position=1) == {"slides": [1, 2, 3]}

    cid = ids["sql-looking"]
    assert value("conversations", "reference", id=cid) == SQL_TEXT
    assert value("content", "text", message_id=cid * 100, position=0).startswith("$$; SELECT")
    assert value("conversations", "user_information", id=cid) == {SQL_KEY: "' OR '1'='1"}

    cid = ids["misfit-type"]
    assert value("conversations", "reviewed", id=cid) is None
    assert value("conversations", "extra", id=cid) == {"reviewed": "yes"}

    cid = ids["string-50MB"]
    text = value("content", "text", message_id=cid * 100, position=0)
    assert len(text) == BIG_STRING_BYTES and set(text) == {"x"}

    again = load(wh, tmp_path, *paths)  # the re-run: nothing changes, not even loaded_at
    assert again.code == 0, again.output[-3000:]
    assert h.snapshot(wh) == first
