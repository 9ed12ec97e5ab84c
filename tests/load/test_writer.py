"""The window writer on both warehouses: counts, idempotence in any order, atomicity, round-trips."""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text

from etl.load.schema import build_metadata
from etl.load.state import StateStore
from etl.load.writer import WindowWriter
from etl.normalize import normalize_conversation
from tests.conftest import SEED_EXPORT, TestWarehouse, dump_tables

T0 = datetime(2024, 3, 25, 8, 0, tzinfo=UTC)


def load_window(
    wh: TestWarehouse,
    conversations: Iterable[Mapping[str, Any]],
    exported_at: datetime,
    batch_size: int = 3,
) -> dict[str, int]:
    engine = wh.engine()
    try:
        with engine.begin() as conn:
            writer = WindowWriter(
                conn,
                build_metadata(wh.schema),
                run_id="test",
                exported_at=exported_at,
                batch_size=batch_size,
            )
            for conversation in conversations:
                writer.add(normalize_conversation(conversation))
            writer.flush()
            return writer.rows
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


def test_same_conversation_twice_in_a_window_later_wins(migrated: TestWarehouse) -> None:
    conversation = seed_conversation()
    earlier = copy.deepcopy(conversation)
    earlier["messages"] = earlier["messages"][:1]
    later = copy.deepcopy(conversation)
    later["reviewed"] = True
    # Same batch, and across batches (batch_size=1).
    for batch_size in (10, 1):
        load_window(
            migrated, [earlier, later], T0 + timedelta(minutes=batch_size), batch_size=batch_size
        )
        t = migrated.table
        assert scalar(migrated, f"SELECT count(*) FROM {t('conversations')}") == 1
        assert scalar(migrated, f"SELECT count(*) FROM {t('messages')}") == 4
        assert bool(scalar(migrated, f"SELECT reviewed FROM {t('conversations')}")) is True


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
            writer = WindowWriter(
                conn, metadata, run_id="r1", exported_at=T0 + timedelta(days=1), batch_size=2
            )
            for n, conversation in enumerate(conversations):
                changed = copy.deepcopy(conversation)
                changed["reviewed"] = True
                writer.add(normalize_conversation(changed))
                if n == 7:  # several batches were already merged by now
                    assert writer.conversations_changed >= 6
                    raise Boom
            store.advance(conn, "k", site="s", filters={}, to=T0 + timedelta(days=1), run_id="r1")
        assert dump_tables(migrated, volatile=True) == before
        with engine.connect() as conn:
            assert store.watermark(conn, "k") == T0
    finally:
        engine.dispose()


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
    from etl.normalize import TABLE_COLUMNS

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
