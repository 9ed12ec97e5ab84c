"""The synthetic dataset covers every documented shape plus the awkward cases clients must keep."""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from etl.fakeapi import Dataset, DatasetSpec

OSLO = ZoneInfo("Europe/Oslo")
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}[+-]\d\d:\d\d$")


def walk(value: Any, path: str = "") -> Any:
    """Yield (path, key, value) for every dict entry, recursively."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield path, k, v
            yield from walk(v, f"{path}.{k}")
    elif isinstance(value, list):
        for v in value:
            yield from walk(v, path + "[]")


def test_every_shape_is_present(dataset: Dataset) -> None:
    convs = [dataset.conversation(cid) for cid in dataset.ids]
    msgs = [m for c in convs for m in c["messages"]]
    contents = [x for m in msgs for x in m.get("content", [])]
    buttons = [b for x in contents for b in x.get("buttons", [])]
    assert {m["type"] for m in msgs} >= {"question", "answer", "event"}
    assert {x["type"] for x in contents} >= {
        "text",
        "image",
        "video",
        "json",
        "link",
        "ssml",
        "carousel",
    }
    assert any(b.get("hidden") is True for b in buttons)
    assert any("attributes" in b for b in buttons)
    assert any(b["button_type"] == "url" and b["url"] for b in buttons)
    clicked = [m["button_clicked"] for m in msgs if "button_clicked" in m]
    assert clicked and all("source_url" in b and "hidden" in b for b in clicked)
    assert any(m["is_human_chat"] and "human_agent" in m for m in msgs)
    assert any(m["is_human_chat"] and m["type"] == "question" for m in msgs)
    assert any(m["actions"]["displayed"]["transfer_to_human"] for m in msgs if "actions" in m)
    assert any("session_id" in m for m in msgs) and any("session_id" not in m for m in msgs)
    assert {c["reviewed"] for c in convs} == {True, False}
    assert {c.get("quality_label") for c in convs} >= {None, "good", "bad"}
    assert any(c.get("authentication_identifier") for c in convs)
    assert any(isinstance(c.get("user_information"), dict) for c in convs)
    assert any("quality_label" not in c for c in convs)  # older conversations lack it
    assert any("sent_filter_values" in m for m in msgs if m["type"] == "question")
    assert any("matched_filter" in m for m in msgs)
    assert any(m["type"] == "question" and "question" not in m for m in msgs)
    intents = [v for _, k, v in walk(convs) if isinstance(v, dict) and v.get("type") == "intent"]
    assert any("title" not in i for i in intents) and any("title" in i for i in intents)
    json_values = [x["json"] for x in contents if x["type"] == "json"]
    assert any(isinstance(v, dict) and "deep" in v for v in json_values)
    assert any(isinstance(v, list) for v in json_values)
    keys = {k for _, k, _ in walk(convs)}
    assert {"x_channel", "x_client", "x_layout", "x_origin", "x_version"} <= keys
    inputs = "".join(m["question"]["input"] for m in msgs if "question" in m)
    for needle in ["😀", "订单", "أين", "שלום", '"', "\\", "\n", "\u200b"]:
        assert needle in inputs, needle


def test_times_ids_and_offsets(dataset: Dataset) -> None:
    offsets: Counter[str] = Counter()
    prev_conv, prev_msg = 0, 0
    midnight = multiday = dst = 0
    for cid in dataset.ids:
        c = dataset.conversation(cid)
        assert cid > prev_conv
        prev_conv = cid
        stamps = [c["time"]["created"], c["time"]["last_message_created"]]
        stamps += [m["time"] for m in c["messages"]]
        stamps += [x["time"] for m in c["messages"] for x in m.get("content", [])]
        assert all(STAMP.match(s) for s in stamps)
        offsets.update(s[-6:] for s in stamps)
        times = [datetime.fromisoformat(m["time"]) for m in c["messages"]]
        assert times == sorted(times) and datetime.fromisoformat(c["time"]["created"]) < times[0]
        assert c["time"]["last_message_created"] == c["messages"][-1]["time"]
        ids = [m["id"] for m in c["messages"]]
        assert ids == sorted(ids) and ids[0] > prev_msg
        prev_msg = ids[-1]
        local = {t.astimezone(OSLO).date() for t in times}
        midnight += len(local) > 1
        multiday += times[-1] - times[0] > timedelta(days=1)
        dst += len({m["time"][-6:] for m in c["messages"]}) > 1
    assert {"+01:00", "+02:00", "+00:00", "-05:00"} <= set(offsets)
    assert midnight >= 7 and multiday >= 3 and dst >= 3


def test_conversations_start_on_their_day(dataset: Dataset) -> None:
    per_day: Counter[date] = Counter()
    for cid in dataset.ids:
        created = datetime.fromisoformat(dataset.conversation(cid)["time"]["created"])
        per_day[created.astimezone(OSLO).date()] += 1
    assert per_day == {date(2024, 3, 25) + timedelta(days=d): 50 for d in range(7)}
    envs = Counter(dataset.environment(i) for i in range(len(dataset)))
    assert envs["live"] > 8 * envs["test"] > 0


def test_sizes() -> None:
    big = Dataset.build(DatasetSpec(days=2, per_day=200))
    small = Dataset.build(DatasetSpec(days=2, per_day=200, messages_per_conversation=2))
    avg_big = sum(map(len, big.payloads)) / len(big)
    avg_small = sum(map(len, small.payloads)) / len(small)
    print(f"average conversation: {avg_big:.0f} B (default), {avg_small:.0f} B (2 messages)")
    assert 4000 < avg_big < 7000
    assert 1000 < avg_small < 2600
    for p in small.payloads[:50]:
        json.loads(p)
