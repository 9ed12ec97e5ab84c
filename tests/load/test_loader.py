"""The window loader on both warehouses: counts, idempotence in any order, atomicity, round-trips;
the replace rule and the dimension rule on their own; JSON too deep to store, through the CLI.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text

from etl.load.loader import ReferenceFold, open_loader, outcome
from etl.load.schema import build_metadata
from etl.load.state import StateStore
from etl.normalize import (
    TABLE_COLUMNS,
    NormalizeError,
    normalize_conversation,
)
from etl.pipeline.runner import normalize_batch
from etl.pipeline.worker import as_sent
from tests.conftest import SEED_EXPORT, TestWarehouse, dump_tables
from tests.pipeline.cli_helpers import etl

T0 = datetime(2024, 3, 25, 8, 0, tzinfo=UTC)


def load_window(
    wh: TestWarehouse,
    conversations: Iterable[dict[str, Any]],
    exported_at: datetime,
    batch_size: int = 3,
) -> dict[str, int]:
    """One window through the runner's path: batches of `batch_size` digested conversations,
    each through `normalize_batch` and `merge`, then `finish`, in one transaction."""
    window = list(conversations)
    engine = wh.engine()
    try:
        with engine.begin() as conn:
            loader = open_loader(
                conn, build_metadata(wh.schema), run_id="test", exported_at=exported_at
            )
            for start in range(0, len(window), batch_size):
                chunk = window[start : start + batch_size]
                items = [as_sent(c) for c in chunk]
                loader.merge(normalize_batch(items, keep_raw=False, unchanged=loader.unchanged))
            loader.finish()
            return loader.rows
    finally:
        engine.dispose()


def seed_conversation() -> dict[str, Any]:
    elements = json.loads(SEED_EXPORT.read_text())
    conversation: dict[str, Any] = elements[1]
    return conversation


def scalar(wh: TestWarehouse, sql: str) -> Any:
    engine = wh.engine()
    try:
        with engine.connect() as conn:
            return conn.execute(text(sql)).scalar()
    finally:
        engine.dispose()


def test_documented_example_loads_exactly(migrated: TestWarehouse) -> None:
    load_window(migrated, [seed_conversation()], T0)
    t = migrated.table
    counts = {
        name: scalar(migrated, f"SELECT count(*) FROM {t(name)}")
        for name in ("conversations", "messages", "content", "buttons", "intent_analysis")
    }
    assert counts == {
        "conversations": 1,
        "messages": 4,
        "content": 9,
        "buttons": 7,
        "intent_analysis": 1,
    }
    assert (
        scalar(migrated, f"SELECT clicked_button_id FROM {t('messages')} WHERE id = 1000006") == 7
    )
    assert (
        scalar(migrated, f"SELECT clicked_button_text FROM {t('messages')} WHERE id = 1000006")
        == "Action buttons"
    )
    assert (
        scalar(
            migrated, f"SELECT count(*) FROM {t('messages')} WHERE clicked_button_id IS NOT NULL"
        )
        == 1
    )


def test_reload_changes_no_row_and_stale_export_is_ignored(migrated: TestWarehouse) -> None:
    conversation = seed_conversation()
    load_window(migrated, [conversation], T0)
    before = dump_tables(migrated, volatile=True)
    rows = load_window(migrated, [conversation], T0 + timedelta(days=1))
    assert sum(rows.values()) == 0
    assert dump_tables(migrated, volatile=True) == before
    # An older export with fewer messages must not replace the newer copy.
    older = copy.deepcopy(conversation)
    older["messages"] = older["messages"][:2]
    load_window(migrated, [older], T0 - timedelta(days=1))
    assert dump_tables(migrated, volatile=True) == before


def test_a_stored_unchanged_conversation_is_counted_and_not_normalized_again(
    migrated: TestWarehouse,
) -> None:
    """A re-run's batch: the loader is asked which texts are stored as they are, and those
    are not even parsed again (here the text of the unchanged one would not parse)."""

    def another(offset: int) -> dict[str, Any]:
        conversation = seed_conversation()
        conversation["id"] += offset
        for message in conversation["messages"]:
            message["id"] += offset
        return conversation

    stored, other, new = seed_conversation(), another(1_000_000), another(2_000_000)
    load_window(migrated, [stored, other], T0)
    edited = copy.deepcopy(other)
    edited["messages"][0]["session_id"] = "another session"
    unchanged, changed, added = as_sent(stored), as_sent(edited), as_sent(new)
    unchanged = (unchanged[0], b"{not json", *unchanged[2:])
    asked: list[tuple[int, str]] = []
    engine = migrated.engine()
    try:
        with engine.begin() as conn:
            loader = open_loader(
                conn, build_metadata(migrated.schema), run_id="t", exported_at=T0 + timedelta(1)
            )

            def ask(conversations: Any) -> set[int]:
                asked.extend(conversations)
                return loader.unchanged(conversations)

            rows = normalize_batch([unchanged, changed, added], keep_raw=False, unchanged=ask)
            assert [c.id for c in rows] == [edited["id"], new["id"]]
            loader.merge(rows)
            loader.finish()
            assert {k: v for k, v in loader.outcomes.items() if v} == {
                "unchanged": 1,
                "changed": 1,
                "new": 1,
            }
            assert loader.returned == {stored["id"], edited["id"], new["id"]}
    finally:
        engine.dispose()
    assert asked == [(c[0].id, c[0].content_hash) for c in (unchanged, changed, added)]
    assert scalar(migrated, f"SELECT count(*) FROM {migrated.table('conversations')}") == 3


def test_reexport_with_more_messages_and_masking_leaves_no_stale_rows(
    migrated: TestWarehouse,
) -> None:
    conversation = seed_conversation()
    first = copy.deepcopy(conversation)
    first["messages"] = first["messages"][:2]
    load_window(migrated, [first], T0)
    assert scalar(migrated, f"SELECT count(*) FROM {migrated.table('messages')}") == 2
    masked = copy.deepcopy(conversation)
    masked["messages"][1]["question"]["input"] = "*****"
    load_window(migrated, [masked], T0 + timedelta(hours=1))
    t = migrated.table
    assert scalar(migrated, f"SELECT count(*) FROM {t('messages')}") == 4
    assert scalar(migrated, f"SELECT count(*) FROM {t('content')}") == 9
    assert scalar(migrated, f"SELECT input FROM {t('messages')} WHERE id = 1000004") == "*****"


@pytest.mark.parametrize("order", ["grows", "shrinks"])
def test_same_conversation_twice_in_a_window_later_wins(
    migrated: TestWarehouse, order: str
) -> None:
    # A conversation that comes again starts a new batch (the extract worker; see
    # tests/pipeline/test_worker.py): the later copy replaces what the earlier batch wrote in
    # the same transaction (same export time). Either order of sizes, so that "the bigger
    # copy" cannot pass for "the later copy".
    conversation = seed_conversation()
    short = copy.deepcopy(conversation)
    short["messages"] = short["messages"][:1]
    full = copy.deepcopy(conversation)
    full["reviewed"] = True
    earlier, later = (short, full) if order == "grows" else (full, short)
    load_window(migrated, [earlier, later], T0, batch_size=1)
    t = migrated.table
    assert scalar(migrated, f"SELECT count(*) FROM {t('conversations')}") == 1
    assert scalar(migrated, f"SELECT count(*) FROM {t('messages')}") == len(later["messages"])
    assert scalar(migrated, f"SELECT message_count FROM {t('conversations')}") == len(
        later["messages"]
    )
    assert bool(scalar(migrated, f"SELECT reviewed FROM {t('conversations')}")) is (later is full)


class Boom(RuntimeError):
    pass


def test_failure_mid_window_leaves_tables_and_state_unchanged(migrated: TestWarehouse) -> None:
    conversations = [make_conversation(i, messages=4) for i in range(1, 11)]
    load_window(migrated, conversations[:3], T0)
    metadata = build_metadata(migrated.schema)
    store = StateStore(metadata)
    engine = migrated.engine()
    try:
        with engine.begin() as conn:
            store.advance(conn, "k", site="s", filters={}, to=T0, run_id="r0")
        before = dump_tables(migrated, volatile=True)
        with pytest.raises(Boom), engine.begin() as conn:
            loader = open_loader(conn, metadata, run_id="r1", exported_at=T0 + timedelta(days=1))
            changed = [copy.deepcopy(c) | {"reviewed": True} for c in conversations]
            for start in range(0, len(changed), 2):
                chunk = changed[start : start + 2]
                loader.merge(normalize_batch([as_sent(c) for c in chunk], keep_raw=False))
                if start == 6:  # four batches were merged by now, in this transaction
                    assert loader.outcomes["changed"] == 3 and loader.outcomes["new"] == 5
                    written = f"SELECT count(*) FROM {migrated.table('conversations')}"
                    assert conn.execute(text(written)).scalar() == 8
                    assert (
                        conn.execute(
                            text(f"{written} WHERE reviewed = {sql_true(migrated)}")
                        ).scalar()
                        == 8
                    )
                    raise Boom
            loader.finish()
            store.advance(conn, "k", site="s", filters={}, to=T0 + timedelta(days=1), run_id="r1")
        assert dump_tables(migrated, volatile=True) == before
        with engine.connect() as conn:
            assert store.watermark(conn, "k") == T0
    finally:
        engine.dispose()


def sql_true(wh: TestWarehouse) -> str:
    return "true" if wh.kind == "postgres" else "1"


NASTY = [
    'it\'s "quoted"',
    "back\\slash \\n \\t \\\\",
    "looks like a NUL: \\u0000 and \\x00",
    "emoji 🤖👩🏽‍💻 and CJK 你好 and RTL שלום",
    "tab\tnewline\nreturn\r",
    "'); DROP TABLE conversations; --",
    "x" * 200_000,
]


def test_strings_round_trip_unchanged(migrated: TestWarehouse) -> None:
    conversation = make_conversation(42, messages=len(NASTY))
    for message, value in zip(conversation["messages"], NASTY, strict=True):
        message["type"] = "question"
        message["question"] = {"type": "question_analysis", "input": value, "labels": [value[:50]]}
    load_window(migrated, [conversation], T0)
    engine = migrated.engine()
    metadata = build_metadata(migrated.schema)
    messages = metadata.tables[f"{migrated.schema}.messages" if migrated.schema else "messages"]
    try:
        with engine.connect() as conn:
            got = conn.execute(
                select(messages.c.input, messages.c.labels).order_by(messages.c.position)
            ).all()
    finally:
        engine.dispose()
    assert [row.input for row in got] == NASTY
    assert [row.labels for row in got] == [[value[:50]] for value in NASTY]


# -- idempotence in any order (hypothesis) ----------------------------------------------------


def make_conversation(cid: int, messages: int, start: datetime = T0) -> dict[str, Any]:
    items: list[dict[str, Any]] = []
    for i in range(messages):
        when = start + timedelta(minutes=7 * i)
        if i % 2:
            intent = {
                "type": "intent",
                "id": 1000 + (cid + i) % 5,
                "title": f"Intent {(cid + i) % 5}",
            }
            items.append(
                {
                    "id": cid * 1000 + i,
                    "time": when.isoformat(),
                    "type": "question",
                    "is_human_chat": False,
                    "question": {
                        "type": "question_analysis",
                        "input": f"q{cid}-{i}",
                        "analysis": [{"processed": "p", "winner": True, "intent": intent}],
                    },
                    "intents": {"predicted": intent},
                }
            )
        else:
            items.append(
                {
                    "id": cid * 1000 + i,
                    "time": when.isoformat(),
                    "type": "answer",
                    "is_human_chat": False,
                    "actions": {
                        "displayed": {
                            "type": "action",
                            "id": 3000 + i % 3,
                            "action_type": "content",
                        }
                    },
                    "content": [
                        {"type": "text", "text": f"<p>a{cid}-{i}</p>", "time": when.isoformat()},
                        {
                            "type": "link",
                            "time": when.isoformat(),
                            "buttons": [
                                {"type": "button", "id": 7, "button_type": "action", "text": "B"}
                            ],
                        },
                    ],
                }
            )
    return {
        "type": "conversation",
        "id": cid,
        "reference": f"{cid:032x}",
        "environment": "live",
        "time": {
            "created": start.isoformat(),
            "last_message_created": items[-1]["time"] if items else None,
        },
        "reviewed": False,
        "messages": items,
    }


def export_at(full: dict[str, Any], when: datetime) -> dict[str, Any]:
    """The conversation as an export taken at `when` would show it: messages so far."""
    snapshot = copy.deepcopy(full)
    snapshot["messages"] = [m for m in full["messages"] if datetime.fromisoformat(m["time"]) < when]
    if snapshot["messages"]:
        snapshot["time"]["last_message_created"] = snapshot["messages"][-1]["time"]
    return snapshot


scenario = st.tuples(
    st.lists(
        st.integers(min_value=1, max_value=9), min_size=1, max_size=6
    ),  # messages per conversation
    st.integers(min_value=2, max_value=5),  # number of windows
    st.randoms(use_true_random=False),
)


def _idempotence(wh: TestWarehouse, spec: tuple[list[int], int, random.Random]) -> None:
    sizes, n_windows, rng = spec
    fulls = [
        make_conversation(cid, size, T0 + timedelta(minutes=3 * cid))
        for cid, size in enumerate(sizes, 1)
    ]
    times = [T0 + timedelta(minutes=15 * (k + 1)) for k in range(n_windows)]
    windows: list[tuple[datetime, list[dict[str, Any]]]] = []
    final: dict[int, dict[str, Any]] = {}
    for when in times:
        members = [c for c in fulls if rng.random() < 0.7 and export_at(c, when)["messages"]]
        exports = [export_at(c, when) for c in members]
        windows.append((when, exports))
        for exported in exports:
            final[exported["id"]] = exported  # later windows are later exports
    plan = windows + [rng.choice(windows) for _ in range(rng.randint(0, 3))]
    rng.shuffle(plan)

    # Reference: each conversation's final export, loaded once.
    def reset() -> None:
        engine = wh.engine()
        try:
            with engine.begin() as conn:
                for name in TABLE_COLUMNS:
                    conn.execute(text(f"DELETE FROM {wh.table(name)}"))
        finally:
            engine.dispose()

    reset()
    latest_time = {
        cid: max(w for w, ex in windows if any(e["id"] == cid for e in ex)) for cid in final
    }
    for cid, exported in final.items():
        load_window(wh, [exported], latest_time[cid])
    expected = dump_tables(wh)
    reset()
    for when, exports in plan:
        load_window(wh, exports, when, batch_size=rng.randint(1, 4))
    assert dump_tables(wh) == expected


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(spec=scenario)
def test_any_order_any_repeats_equals_final_exports_once(
    migrated: TestWarehouse, spec: Any
) -> None:
    _idempotence(migrated, spec)


# -- the rules on their own -------------------------------------------------------------------

INTENT_SEEN_AT = TABLE_COLUMNS["intents"].index("last_seen_at")


def _with_intent(cid: int, when: str, title: str) -> dict[str, Any]:
    intent = {"type": "intent", "id": 42, "title": title}
    return {
        "type": "conversation",
        "id": cid,
        "messages": [
            {
                "id": cid * 10,
                "time": when,
                "type": "question",
                "question": {"type": "question_analysis", "input": "hi"},
                "intents": {"predicted": intent},
            }
        ],
    }


def _intent_rows(*conversations: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [row for c in conversations for row in normalize_conversation(c).rows["intents"]]


def _folded(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The folded rows, without the per-attribute seen times rows() appends."""
    fold = ReferenceFold()
    fold.add(rows)
    return [row[: len(rows[0])] for row in fold.rows()]


def test_fold_keeps_the_latest_last_seen_at_whatever_the_order() -> None:
    newest = _with_intent(1, "2024-01-02T10:00:00+00:00", "newest")
    older = _with_intent(2, "2024-01-01T10:00:00+00:00", "older, later in the batch")
    for rows in (_intent_rows(newest, older), _intent_rows(older, newest)):
        assert len(rows) == 2
        ((intent_id, title, _, seen, _),) = _folded(rows)
        assert (intent_id, title) == (42, "newest")
        assert seen == datetime(2024, 1, 2, 10, tzinfo=UTC)


def test_fold_on_a_tie_keeps_the_later_row() -> None:
    rows = _intent_rows(
        *(_with_intent(cid, "2024-01-01T10:00:00Z", title) for cid, title in enumerate("abc", 1))
    )
    ((_, title, *_),) = _folded(rows)
    assert title == "c"


def test_fold_keeps_one_row_per_id_and_dated_values_over_undated_ones() -> None:
    old, new = datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 2, tzinfo=UTC)
    rows = [
        (1, "1 undated", None, None),
        (2, "2 new", new, None),
        (1, "1 old", old, None),
        (2, "2 undated", None, None),
    ]
    assert sorted(_folded(rows)) == [(1, "1 old", old, None), (2, "2 new", new, None)]
    undated = [(3, "first", None, None), (3, "second", None, None)]
    assert _folded(undated) == [(3, "second", None, None)]


def test_fold_takes_each_attribute_from_the_latest_reference_that_has_it() -> None:
    """A later reference without a title (optional, says the changelog) keeps the title an
    earlier one gave; extra is an attribute too."""
    t1, t2, t3 = (datetime(2024, 1, d, tzinfo=UTC) for d in (1, 2, 3))
    rows = [
        (42, "Greeting", True, t1, {"confidence": 0.9}),
        (42, None, False, t3, None),  # the latest: no title, no extra
        (42, "Old title", None, t2, None),
        (7, None, None, t2, None),
    ]
    assert sorted(_folded(rows)) == [
        (7, None, None, t2, None),
        (42, "Old title", False, t3, {"confidence": 0.9}),
    ]


@pytest.mark.parametrize(
    ("incoming_hash", "stored", "expected"),
    [
        ("h1", None, "new"),
        ("h1", ("h1", T0 - timedelta(days=1)), "unchanged"),  # same content: nothing to change
        ("h1", ("h1", T0), "unchanged"),
        ("h1", ("h1", T0 + timedelta(days=1)), "unchanged"),
        ("h1", ("h1", None), "unchanged"),
        ("h2", ("h1", T0 - timedelta(days=1)), "changed"),  # stored from an older export
        ("h2", ("h1", T0), "changed"),  # same export (a later copy in the window)
        ("h2", ("h1", T0 + timedelta(days=1)), "older"),  # stale: a newer export is stored
        ("h2", ("h1", None), "changed"),  # stored without an export time: replaced
    ],
    ids=[
        "not-stored",
        "same-hash-older-export",
        "same-hash-same-export",
        "same-hash-newer-export",
        "same-hash-no-export-time",
        "changed-older-export",
        "changed-same-export",
        "changed-newer-export",
        "changed-no-export-time",
    ],
)
def test_outcome(
    incoming_hash: str, stored: tuple[str, datetime | None] | None, expected: str
) -> None:
    assert outcome(T0, incoming_hash, stored) == expected
    # --replace: whatever the export times, a different copy replaces the stored one.
    forced = outcome(T0, incoming_hash, stored, replace=True)
    assert forced == ("changed" if expected == "older" else expected)


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        (None, "new"),
        (("h1", None), "changed"),  # neither export time known: the later load wins
        (("h1", T0), "older"),  # a copy from a known export is never replaced by an undated one
    ],
)
def test_outcome_of_a_file_without_an_export_time(
    stored: tuple[str, datetime | None] | None, expected: str
) -> None:
    assert outcome(None, "h2", stored) == expected
    assert outcome(None, "h2", stored, replace=True) == ("new" if stored is None else "changed")


# -- JSON too deep to store, through `etl load-file` --------------------------------------------

DEEP_ID = 7


def _write_deep_export(path: Path, depth: int, *, deep_first: bool) -> None:
    """The seed export with a second conversation, DEEP_ID, whose user_information is `depth`
    nested arrays. First in the file, orjson parses it and it reaches the loader as its text;
    last, ijson does (the splitter leaves the body's last conversation to it) and it reaches the
    loader as the parsed object."""
    query_info, seed, post_query_info = json.loads(SEED_EXPORT.read_text())
    deep = copy.deepcopy(seed)
    deep["id"] = DEEP_ID
    for k, message in enumerate(deep["messages"]):
        message["id"] = DEEP_ID * 100 + k
    deep["user_information"] = "DEEP"
    query_info["conversations"] = post_query_info["conversations"] = 2
    body = [deep, seed] if deep_first else [seed, deep]
    text_ = json.dumps([query_info, *body, post_query_info])
    path.write_text(text_.replace('"DEEP"', "[" * depth + "]" * depth))


DEEP_CASES = [
    *(pytest.param(depth, True, id=f"{depth}-as-text") for depth in (960, 966, 967, 968, 975, 995)),
    *(pytest.param(depth, False, id=f"{depth}-as-object") for depth in (500, 900, 960, 975, 995)),
]
# Nesting the code before the rewrite stored whichever parser read it (it stored up to ~950
# levels on both paths): these must load, not only fail cleanly.
STORED = {500, 900}


@pytest.mark.parametrize(("depth", "deep_first"), DEEP_CASES)
def test_json_nested_too_deep_to_store_is_a_data_error_naming_the_conversation(
    migrated: TestWarehouse, tmp_path: Path, depth: int, deep_first: bool
) -> None:
    """About the recursion limit: the file is refused with exit code 5 (a data error, not a
    crash) naming the conversation, and nothing of it is stored; or, where the value could be
    hashed, sent and written after all, it is stored exactly. Never exit 1 or a traceback."""
    path = tmp_path / "deep.json"
    _write_deep_export(path, depth, deep_first=deep_first)

    result = etl("load-file", str(path), wh=migrated)

    assert "Traceback" not in result.output, result.output
    assert result.code in ((0,) if depth in STORED else (0, 5)), result.output
    t = migrated.table
    if result.code == 5:
        assert f"conversation {DEEP_ID}: a value in it is nested too deeply" in result.stderr
        assert str(path) in result.stderr
        assert scalar(migrated, f"SELECT count(*) FROM {t('conversations')}") == 0
        assert scalar(migrated, f"SELECT count(*) FROM {t('messages')}") == 0
    else:
        assert scalar(migrated, f"SELECT count(*) FROM {t('conversations')}") == 2
        # As text: parsing it back would take the test's own (deeper) stack past the limit.
        as_text = "user_information::text" if migrated.kind == "postgres" else "user_information"
        stored = scalar(
            migrated, f"SELECT {as_text} FROM {t('conversations')} WHERE id = {DEEP_ID}"
        )
        assert stored.replace(" ", "") == "[" * depth + "]" * depth


def test_a_value_too_deep_to_encode_is_a_data_error_naming_the_conversation(
    migrated: TestWarehouse,
) -> None:
    # The hash is taken at another stack depth than the loader's encoding, so a value can pass
    # one and not the other; here the row is given a value no stack can encode (the loaders'
    # own guard, whatever the runner's stack).
    normalized = normalize_conversation(_with_intent(5, "2024-01-01T10:00:00Z", "t"))
    deep: Any = "leaf"
    for _ in range(100_000):
        deep = [deep]
    row = list(normalized.rows["conversations"][0])
    row[TABLE_COLUMNS["conversations"].index("user_information")] = deep
    normalized.rows["conversations"] = [tuple(row)]
    normalized.plain = False  # as the hash would have found it
    engine = migrated.engine()
    try:
        with (
            pytest.raises(NormalizeError, match="nested too deeply") as raised,
            engine.begin() as conn,
        ):
            loader = open_loader(conn, build_metadata(migrated.schema), run_id="t", exported_at=T0)
            loader.load([normalized])
    finally:
        engine.dispose()
    assert raised.value.conversation_id == 5
    assert scalar(migrated, f"SELECT count(*) FROM {migrated.table('conversations')}") == 0


def test_fold_a_value_seen_again_is_the_later_one_on_a_tie() -> None:
    """A, B, A at the same time: the last reference is A (found in review: B won)."""
    t = datetime(2024, 1, 1, tzinfo=UTC)
    rows = [(42, "A", None, t, None), (42, "B", None, t, None), (42, "A", None, t, None)]
    assert _folded(rows) == [(42, "A", None, t, None)]
    undated = [
        (42, "A", None, None, None),
        (42, "B", None, None, None),
        (42, "A", None, None, None),
    ]
    assert _folded(undated) == [(42, "A", None, None, None)]


def test_fold_of_many_distinct_values_keeps_one_row_per_id() -> None:
    """Every reference with its own `confidence` (a per-occurrence key): one running row."""
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    rows = [(7, "T", None, t0 + timedelta(seconds=i), {"confidence": i}) for i in range(20_000)]
    rows.insert(0, (7, None, True, t0 - timedelta(days=1), None))
    fold = ReferenceFold()
    fold.add(rows)
    latest = t0 + timedelta(seconds=19_999)
    assert fold.rows() == [
        # id, title, inherit_skill, last_seen_at, extra, then when each value was seen
        (7, "T", True, latest, {"confidence": 19_999}, latest, t0 - timedelta(days=1), latest)
    ]


def test_fold_leaves_the_exact_text_of_cleaned_values_to_the_messages() -> None:
    """`_original` describes one reference's columns, which may not be the ones that win."""
    t1, t2 = datetime(2024, 5, 1, tzinfo=UTC), datetime(2024, 5, 2, tzinfo=UTC)
    nul = {"_original": {"title": '"Opening\\u0000hours"'}, "colour": "red"}
    rows = [(9, "Opening\ufffdhours", None, t1, nul), (9, "Prices", None, t2, None)]
    assert _folded(rows) == [(9, "Prices", None, t2, {"colour": "red"})]
