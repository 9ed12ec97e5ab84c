"""Export endpoint behaviour over real HTTP: ranges, matching, filters, masking, encodings."""

from __future__ import annotations

import json
import zlib
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests

from etl.fakeapi import Dataset, FakeApi
from etl.fakeapi.timefmt import from_us, parse_iso_us

from .conftest import MakeApi
from .helpers import SEED_FILE, conversations, export, export_ok

OSLO = ZoneInfo("Europe/Oslo")
WEEK = {"from": "2024-03-25", "to": "2024-04-01"}


def ids_of(elements: list[dict[str, Any]]) -> list[int]:
    return [c["id"] for c in conversations(elements)]


def iso(us: int) -> str:
    return from_us(us, UTC).isoformat(timespec="microseconds")


def test_seed_file_served_exactly(make_api: MakeApi) -> None:
    api = make_api(from_file=SEED_FILE)
    body = {"from": "2021-01-01", "to": "2022-01-01", "conversation_ids": [1000001]}
    elements = export_ok(api, body)
    assert len(elements) == 3
    fixture = json.loads(SEED_FILE.read_text())
    assert elements[1] == fixture[1]
    assert len(elements[1]["messages"]) == 4
    qi, post = elements[0], elements[-1]
    assert qi["interpreted_query_range"] == [
        "2021-01-01T00:00:00+01:00",
        "2022-01-01T00:00:00+01:00",
    ]
    assert qi["query"] == fixture[0]["query"]
    assert list(qi["query"]) == sorted(qi["query"])
    assert qi["conversations"] == 1
    assert set(qi) == set(fixture[0])
    assert set(post) == set(fixture[-1])
    assert post["conversations"] == 1
    datetime.fromisoformat(qi["current_time"])
    # the conversation is outside this window
    assert export_ok(api, {"from": "2021-01-29", "to": "2021-02-01"})[0]["conversations"] == 0


@pytest.mark.parametrize(
    ("accept", "header", "magic"),
    [
        ("gzip, deflate", "gzip", b"\x1f\x8b"),
        ("deflate", "deflate", b"\x78"),
        ("identity", None, b"["),
    ],
)
def test_encodings(api: FakeApi, accept: str, header: str | None, magic: bytes) -> None:
    r = requests.post(
        api.url + "/api/export/v3",
        json=WEEK,
        headers={"Authorization": "Bearer sim-token", "Accept-Encoding": accept},
        stream=True,
        timeout=30,
    )
    assert r.status_code == 200
    assert r.headers["Transfer-Encoding"] == "chunked"
    assert r.headers["Content-Type"] == "application/json"
    assert r.headers.get("Content-Encoding") == header
    raw = r.raw.read(decode_content=False)
    assert raw.startswith(magic)
    if header is not None:
        text = zlib.decompress(raw, 31 if header == "gzip" else 15)
        assert len(raw) < len(text) / 3
    else:
        text = raw
    elements = json.loads(text)
    assert ids_of(elements) == api.matching_ids(
        datetime(2024, 3, 25, tzinfo=OSLO), datetime(2024, 4, 1, tzinfo=OSLO)
    )
    assert elements[0]["conversations"] == len(conversations(elements)) > 300


def test_date_offset_and_naive_forms_agree_across_dst(api: FakeApi) -> None:
    forms = [
        {"from": "2024-03-30", "to": "2024-04-01"},
        {"from": "2024-03-30T00:00:00+01:00", "to": "2024-04-01T00:00:00+02:00"},
        {"from": "2024-03-29T23:00:00+00:00", "to": "2024-03-31T22:00:00Z"},
        {"from": "2024-03-30T00:00:00", "to": "2024-04-01T00:00:00"},
    ]
    results = [export_ok(api, f) for f in forms]
    assert results[0][0]["interpreted_query_range"] == [
        "2024-03-30T00:00:00+01:00",
        "2024-04-01T00:00:00+02:00",
    ]
    for r in results[1:]:
        assert r[0]["interpreted_query_range"] == results[0][0]["interpreted_query_range"]
        assert ids_of(r) == ids_of(results[0])
        assert r[0]["query"]["from"] in {f["from"] for f in forms}  # echoed as sent
    # a naive time after the switch is read as +02:00, one before it as +01:00
    after = export_ok(api, {"from": "2024-03-31T03:30:00", "to": "2024-03-31T09:00:00"})
    assert after[0]["interpreted_query_range"][0] == "2024-03-31T03:30:00+02:00"
    explicit = export_ok(api, {"from": "2024-03-31T01:30:00Z", "to": "2024-03-31T07:00:00Z"})
    assert ids_of(after) == ids_of(explicit)
    before = export_ok(api, {"from": "2024-03-31T00:30:00", "to": "2024-03-31T01:50:00"})
    assert before[0]["interpreted_query_range"][1] == "2024-03-31T01:50:00+01:00"


def test_dst_straddling_conversation_is_exported_whole(api: FakeApi, dataset: Dataset) -> None:
    elements = export_ok(api, {"from": "2024-03-31T01:00:00", "to": "2024-03-31T02:00:00"})
    straddling = [
        c
        for c in conversations(elements)
        if {m["time"][-6:] for m in c["messages"]} == {"+01:00", "+02:00"}
    ]
    assert straddling, "expected conversations that cross the 2024-03-31 DST switch"
    for c in straddling:
        times = [parse_iso_us(m["time"]) for m in c["messages"]]
        assert times == sorted(times)


def test_half_open_window(api: FakeApi, dataset: Dataset) -> None:
    index = 40
    cid = dataset.ids[index]
    first = dataset.interactions_us(index)[0]
    body: dict[str, Any] = {"conversation_ids": [cid], "environment": dataset.environment(index)}
    at_to = export_ok(api, {**body, "from": iso(first - 3_600_000_000), "to": iso(first)})
    assert ids_of(at_to) == []
    at_from = export_ok(api, {**body, "from": iso(first), "to": iso(first + 1)})
    assert ids_of(at_from) == [cid]
    unfiltered = export_ok(
        api, {"from": iso(first), "to": iso(first + 1), "environment": body["environment"]}
    )
    assert ids_of(unfiltered) == [cid]


def test_only_end_user_interactions_match(api: FakeApi, dataset: Dataset) -> None:
    checked = 0
    for index in range(len(dataset)):
        conv = dataset.conversation(dataset.ids[index])
        interactions = set(dataset.interactions_us(index))
        for m in conv["messages"]:
            t = parse_iso_us(m["time"])
            if m["type"] != "question" and "button_clicked" not in m and t not in interactions:
                window = {"from": iso(t), "to": iso(t + 1), "environment": conv["environment"]}
                assert conv["id"] not in ids_of(export_ok(api, window))
                checked += 1
                break
        if checked >= 5:
            break
    assert checked == 5
    # button clicks are end-user interactions
    for index in range(len(dataset)):
        conv = dataset.conversation(dataset.ids[index])
        clicks = [m for m in conv["messages"] if "button_clicked" in m]
        if clicks:
            t = parse_iso_us(clicks[0]["time"])
            window = {"from": iso(t), "to": iso(t + 1), "environment": conv["environment"]}
            assert conv["id"] in ids_of(export_ok(api, window))
            break
    else:
        pytest.fail("no button_clicked answer in the dataset")


def test_multiday_conversation_exported_whole_in_each_window(
    api: FakeApi, dataset: Dataset
) -> None:
    for index in range(len(dataset)):
        times = list(dataset.interactions_us(index))
        if times[-1] - times[0] > 86_400_000_000 and dataset.environment(index) == "live":
            break
    else:
        pytest.fail("no multi-day conversation")
    cid = dataset.ids[index]
    first = export_ok(api, {"from": iso(times[0]), "to": iso(times[0] + 1)})
    last = export_ok(api, {"from": iso(times[-1]), "to": iso(times[-1] + 1)})
    c1 = next(c for c in conversations(first) if c["id"] == cid)
    c2 = next(c for c in conversations(last) if c["id"] == cid)
    assert c1 == c2 == dataset.conversation(cid)


def test_filters_and_echo(api: FakeApi, dataset: Dataset) -> None:
    week = export_ok(api, WEEK)
    assert {c["environment"] for c in conversations(week)} == {"live"}
    test_env = export_ok(api, {**WEEK, "environment": "test"})
    assert conversations(test_env) and {c["environment"] for c in conversations(test_env)} == {
        "test"
    }
    some = ids_of(week)[3:9:2]
    picked = export_ok(api, {**WEEK, "conversation_ids": [*some, 1]})
    assert ids_of(picked) == some
    extra = {"action_ids": [3001, 3002], "api_status": "ok", "x_custom": {"nested": [1, None]}}
    echoed = export_ok(api, {**WEEK, **extra})[0]["query"]
    assert echoed == {**WEEK, **extra, "environment": "live", "only_masked": False}
    assert list(echoed) == sorted(echoed)


def test_only_masked(api: FakeApi) -> None:
    plain = conversations(export_ok(api, WEEK))
    masked = conversations(export_ok(api, {**WEEK, "only_masked": True}))
    assert [c["id"] for c in plain] == [c["id"] for c in masked]
    n_questions = 0
    for p, m in zip(plain, masked, strict=True):
        for pm, mm in zip(p["messages"], m["messages"], strict=True):
            if pm["type"] == "question" and "question" in pm:
                n_questions += 1
                q, mq = pm["question"], mm["question"]
                assert mq["input"] == "*" * len(q["input"])
                assert mq["important_words"] == ["*" * len(w) for w in q["important_words"]]
                for a, ma in zip(q["analysis"], mq["analysis"], strict=True):
                    assert set(ma["processed"]) == {"*"} and ma["intent"] == a["intent"]
                assert {k: v for k, v in mm.items() if k != "question"} == {
                    k: v for k, v in pm.items() if k != "question"
                }
            else:
                assert pm == mm
    assert n_questions > 100


def test_server_clock_truncates_conversations_in_progress(
    make_api: MakeApi, dataset: Dataset
) -> None:
    index = next(i for i in range(100, len(dataset)) if len(dataset.interactions_us(i)) >= 3)
    times = dataset.interactions_us(index)
    now_us = times[1]
    api = make_api(now=from_us(now_us, OSLO))
    window = {
        "from": iso(times[0]),
        "to": iso(times[0] + 1),
        "environment": dataset.environment(index),
    }
    elements = export_ok(api, window)
    assert elements[0]["current_time"] == from_us(now_us, OSLO).isoformat(timespec="microseconds")
    conv = next(c for c in conversations(elements) if c["id"] == dataset.ids[index])
    full = dataset.conversation(dataset.ids[index])
    assert 0 < len(conv["messages"]) < len(full["messages"])
    assert all(parse_iso_us(m["time"]) <= now_us for m in conv["messages"])
    assert conv["time"]["last_message_created"] == conv["messages"][-1]["time"]
    assert conv["messages"] == full["messages"][: len(conv["messages"])]
    # nothing after now exists: a later window is empty, and later interactions don't match
    assert export_ok(api, {"from": iso(now_us + 1), "to": "2024-04-10"})[0]["conversations"] == 0
    api.now = None  # real clock: the conversation is complete
    later = export_ok(api, window)
    assert next(c for c in conversations(later) if c["id"] == dataset.ids[index]) == full


def test_count_matches_streamed_and_dataset(api: FakeApi, dataset: Dataset) -> None:
    for start, hours in [
        ("2024-03-25T10:00:00+01:00", 3),
        ("2024-03-26", 24),
        ("2024-03-30T20:00:00", 30),
    ]:
        s = datetime.fromisoformat(start).replace(
            tzinfo=datetime.fromisoformat(start).tzinfo or OSLO
        )
        e = s + timedelta(hours=hours)
        elements = export_ok(api, {"from": start, "to": e.isoformat()})
        assert elements[0]["conversations"] == len(conversations(elements))
        assert elements[-1]["conversations"] == len(conversations(elements))
        assert ids_of(elements) == dataset.matching_ids(s, e, environment="live")
        assert ids_of(elements) == sorted(ids_of(elements))


def test_determinism(make_api: MakeApi) -> None:
    from .helpers import SPEC

    a, b = Dataset.build(SPEC), Dataset.build(SPEC)
    assert a.payloads == b.payloads
    other = Dataset.build(type(SPEC)(seed=2, start=SPEC.start, days=1, per_day=SPEC.per_day))
    assert other.payloads[0] != a.payloads[0]
    r1 = export(make_api(dataset=a), WEEK).json()
    r2 = export(make_api(dataset=b), WEEK).json()
    assert r1[1:-1] == r2[1:-1]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"to": "2024-03-26"}, "'from'"),
        ({"from": "2024-03-26"}, "'to'"),
        ({"from": "yesterday", "to": "2024-03-26"}, "'from'"),
        ({"from": "2024-03-26", "to": 20240327}, "'to'"),
        ({"from": "2024-03-26", "to": "2024-03-26"}, "before"),
        ({"from": "2024-03-27", "to": "2024-03-26"}, "before"),
        ({"from": "2024-03-25", "to": "2024-03-26", "conversation_ids": "1"}, "conversation_ids"),
        ({"from": "2024-03-25", "to": "2024-03-26", "only_masked": "yes"}, "only_masked"),
        (b"{not json", "JSON"),
        (b"[1, 2]", "object"),
    ],
)
def test_bad_requests(api: FakeApi, body: Any, fragment: str) -> None:
    r = export(api, body)
    assert r.status_code == 400
    err = r.json()
    assert err["type"] == "error" and fragment in err["message"]


def test_paths_and_methods(api: FakeApi) -> None:
    r = requests.get(api.url + "/api/export/v3", timeout=10)
    assert r.status_code == 405 and r.json()["type"] == "error" and r.headers["Allow"] == "POST"
    r = requests.post(api.url + "/api/export/v2", json=WEEK, timeout=10)
    assert r.status_code == 404 and r.json()["type"] == "error"
    assert requests.head(api.url + "/api/export/v3", timeout=10).status_code == 405
    with requests.Session() as s:  # keep-alive: several requests on one connection
        for _ in range(3):
            r = s.post(
                api.url + "/api/export/v3",
                json=WEEK,
                headers={"Authorization": "Bearer sim-token"},
                timeout=10,
            )
            assert r.status_code == 200 and r.json()[-1]["type"] == "post_query_info"
    assert api.export_requests == 3


def test_a_paced_server_reports_its_latency_and_rate_and_refuses_beyond_capacity(
    make_api: MakeApi,
) -> None:
    """`--latency`, `--rate` and `--max-concurrent` (issue 13's realistic server): the query
    waits before the first byte, conversations come at the rate, and an export beyond the
    capacity is refused with 429 and a Retry-After while another one is being answered."""
    import threading

    api = make_api(latency=0.3, rate=100.0, max_concurrent=1)
    body = {"from": "2024-03-26", "to": "2024-03-27"}
    answers: list[list[dict[str, Any]]] = []
    first = threading.Thread(target=lambda: answers.append(export_ok(api, body)))
    first.start()
    while api.exports_in_flight_peak == 0:
        pass
    refused = export(api, body)
    first.join()
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
    assert api.refused_at_capacity == 1
    (elements,) = answers
    query_info, post = elements[0], elements[-1]
    assert query_info["query_seconds"] >= 0.3
    assert post["conversations"] == len(elements) - 2 > 10
    assert post["conversations/sec"] <= 100 * 1.05
