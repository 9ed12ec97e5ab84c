"""Each injected fault does what it says, for exactly the first K export requests."""

from __future__ import annotations

import json
import threading
import time
import zlib
from typing import Any

import pytest
import requests

from etl.fakeapi import FakeApi, Faults

from .conftest import MakeApi
from .helpers import conversations, export, export_ok

pytestmark = pytest.mark.reliability

WEEK = {"from": "2024-03-25", "to": "2024-04-01"}
DAY = {"from": "2024-03-26", "to": "2024-03-27"}


def raw_post(
    api: FakeApi, body: Any = DAY, encoding: str = "identity", timeout: Any = 10
) -> requests.Response:
    return requests.post(
        api.url + "/api/export/v3",
        json=body,
        headers={"Authorization": "Bearer sim-token", "Accept-Encoding": encoding},
        stream=True,
        timeout=timeout,
    )


def test_error_after_then_recovers(make_api: MakeApi) -> None:
    api = make_api(faults=Faults(error_after=5, error_times=1, error_message="db went away"))
    r = export(api, WEEK)
    assert r.status_code == 200
    elements = r.json()  # still a valid JSON array
    assert elements[0]["type"] == "query_info" and elements[0]["conversations"] > 5
    assert len(conversations(elements)) == 5
    assert elements[-1] == {"type": "error", "message": "db went away"}
    full = export_ok(api, WEEK)
    assert len(conversations(full)) == full[0]["conversations"]
    assert api.export_requests == 2


def test_error_after_more_than_matching_still_errors(make_api: MakeApi) -> None:
    api = make_api(faults=Faults(error_after=100_000))
    for _ in range(2):  # times=-1: every request
        elements = export(api, DAY).json()
        assert elements[-1]["type"] == "error"
        assert len(conversations(elements)) == elements[0]["conversations"]


@pytest.mark.parametrize("encoding", ["identity", "gzip"])
def test_truncate_after_breaks_the_chunked_body(make_api: MakeApi, encoding: str) -> None:
    api = make_api(faults=Faults(truncate_after=20, truncate_times=2))
    for _ in range(2):
        with pytest.raises(requests.exceptions.RequestException):
            export(api, WEEK, encoding=encoding).json()
    r = raw_post(api, WEEK)  # the third one is whole
    assert len(conversations(json.loads(r.raw.read()))) > 20
    api3 = make_api(faults=Faults(truncate_after=20, truncate_times=1))
    r = raw_post(api3, WEEK)
    got = b""
    with pytest.raises(Exception):  # noqa: B017 - urllib3 raises ProtocolError
        for piece in r.raw.stream(4096, decode_content=False):
            got += piece
    assert got.startswith(b'[{"type":"query_info"') and got.count(b'"type":"conversation"') >= 20


def test_truncate_gzip_cuts_the_compressed_stream(make_api: MakeApi) -> None:
    api = make_api(faults=Faults(truncate_gzip=True, truncate_gzip_times=1, truncate_gzip_after=3))
    r = raw_post(api, WEEK, encoding="identity")
    assert r.headers["Content-Encoding"] == "gzip"  # forced
    raw = r.raw.read(decode_content=False)  # the chunked body itself ends cleanly
    d = zlib.decompressobj(31)
    text = d.decompress(raw)
    assert not d.eof
    assert text.startswith(b'[{"type":"query_info"')
    with pytest.raises(ValueError):
        json.loads(text)
    export_ok(api, WEEK, encoding="gzip")


def test_unterminated_array(make_api: MakeApi) -> None:
    api = make_api(faults=Faults(unterminated_array=True, unterminated_array_times=1))
    text = export(api, DAY).text
    assert not text.endswith("]")
    with pytest.raises(ValueError):
        json.loads(text)
    elements = json.loads(text + "]")
    assert elements[-1]["type"] == "post_query_info"
    export_ok(api, DAY)


def test_omit_post_query_info(make_api: MakeApi) -> None:
    api = make_api(faults=Faults(omit_post_query_info=True, omit_post_query_info_times=1))
    elements = export(api, DAY).json()
    assert elements[-1]["type"] == "conversation"
    assert len(conversations(elements)) == elements[0]["conversations"]
    export_ok(api, DAY)


def test_undercount(make_api: MakeApi) -> None:
    api = make_api(faults=Faults(undercount=3, undercount_times=1))
    elements = export_ok(api, DAY)
    assert elements[0]["conversations"] == len(conversations(elements)) + 3
    elements = export_ok(api, DAY)
    assert elements[0]["conversations"] == len(conversations(elements))


def test_invalid_json(make_api: MakeApi) -> None:
    api = make_api(faults=Faults(invalid_json=True, invalid_json_times=1))
    r = export(api, DAY)
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
    with pytest.raises(ValueError):
        r.json()
    export_ok(api, DAY)


@pytest.mark.parametrize(
    ("status", "retry_after"), [(429, "2"), (503, "1"), (500, None), (401, None), (403, None)]
)
def test_status(make_api: MakeApi, status: int, retry_after: str | None) -> None:
    api = make_api(faults=Faults(status=status, status_times=2, retry_after=retry_after))
    for _ in range(2):
        r = export(api, DAY)
        assert r.status_code == status
        assert r.json()["type"] == "error" and r.json()["message"]
        assert r.headers.get("Retry-After") == retry_after
    export_ok(api, DAY)
    assert api.export_requests == 3


def test_hang_before_headers_and_prompt_stop(make_api: MakeApi) -> None:
    api = make_api(faults=Faults(hang_before_headers=True, hang_before_headers_times=1))
    with pytest.raises(requests.exceptions.ReadTimeout):
        export(api, DAY, timeout=0.5)
    export_ok(api, DAY)
    hanging = make_api(faults=Faults(hang_before_headers=True))
    errors: list[BaseException] = []

    def call() -> None:
        try:
            export(hanging, DAY, timeout=30)
        except requests.exceptions.RequestException as exc:
            errors.append(exc)

    t = threading.Thread(target=call)
    t.start()
    while hanging.export_requests == 0:
        time.sleep(0.01)
    time.sleep(0.1)
    # stop() does not wait for the hanging handler: it returns, and closes the connection.
    stopper = threading.Thread(target=hanging.stop, daemon=True)
    stopper.start()
    stopper.join(20)
    assert not stopper.is_alive(), "stop() waited for the hanging request"
    t.join(20)
    assert not t.is_alive() and errors  # the client saw the connection go away


def test_stall_after_headers(make_api: MakeApi) -> None:
    api = make_api(faults=Faults(stall_after_headers=True, stall_after_headers_times=1))
    r = raw_post(api, timeout=(5, 0.5))
    assert r.status_code == 200
    assert r.raw.read(1) == b"["
    with pytest.raises(Exception):  # noqa: B017 - urllib3 ReadTimeoutError
        r.raw.read(1)
    r.close()
    export_ok(api, DAY)


def test_trickle(make_api: MakeApi, api: FakeApi) -> None:
    cid = conversations(export_ok(api, DAY))[0]["id"]
    body = {**DAY, "conversation_ids": [cid]}
    size = len(export(api, body).content)
    slow = make_api(faults=Faults(trickle_bytes_per_s=size * 4))
    t0 = time.monotonic()
    elements = export_ok(slow, body)
    assert time.monotonic() - t0 >= 0.2
    assert [c["id"] for c in conversations(elements)] == [cid]


def test_gzip_bomb(make_api: MakeApi) -> None:
    size = 50 << 20
    api = make_api(faults=Faults(gzip_bomb=True, gzip_bomb_times=1, gzip_bomb_bytes=size))
    r = raw_post(api, encoding="identity")
    assert r.headers["Content-Encoding"] == "gzip"
    raw = r.raw.read(decode_content=False)
    assert len(raw) < size // 500
    d = zlib.decompressobj(31)
    inflated, head, tail, pending = 0, b"", b"", raw
    while pending:
        out = d.decompress(pending, 1 << 20)
        pending = d.unconsumed_tail
        head = head or out[:200]
        tail = (tail + out)[-400:]
        inflated += len(out)
    assert d.eof and inflated > size  # a valid gzip member (CRC and length checked)
    assert head.startswith(b'[{"type":"query_info"')
    assert tail.rstrip().endswith(b"}]") and b"post_query_info" in tail
    export_ok(api, DAY, encoding="gzip")


def test_stacked_encoding(make_api: MakeApi) -> None:
    api = make_api(faults=Faults(stacked_encoding=True, stacked_encoding_times=1))
    r = raw_post(api)
    assert r.headers["Content-Encoding"] == "gzip, gzip"
    raw = r.raw.read(decode_content=False)
    once = zlib.decompress(raw, 31)
    assert once.startswith(b"\x1f\x8b")
    elements = json.loads(zlib.decompress(once, 31))
    assert elements[-1]["type"] == "post_query_info"
    assert export(api, DAY).headers.get("Content-Encoding") is None


def test_fault_counts_every_export_post(make_api: MakeApi) -> None:
    api = make_api(faults=Faults(status=503, status_times=1))
    assert export(api, DAY, token="wrong").status_code == 401  # consumes request 1
    assert export(api, DAY).status_code == 200
