"""ExportStream's ijson path: read sizes that adapt to the items; what it promises of floats."""

from __future__ import annotations

import gzip
import io
import json
import signal
from typing import Any

import pytest

from etl.extract import BrokenStreamError, ExportStream
from etl.extract.decode import DecodedReader
from etl.extract.guards import MAX_PARSE_READ, PARSE_READ, Prefixed


class _RecordingReader:
    """A body that remembers how much the parser asked for on every read."""

    def __init__(self, body: bytes) -> None:
        self._body = io.BytesIO(body)
        self.sizes: list[int] = []

    def read(self, size: int = -1) -> bytes:
        if size:
            self.sizes.append(size)
        return self._body.read(size)


def _export(*conversations: dict[str, Any]) -> bytes:
    items = [
        {"type": "query_info", "conversations": len(conversations)},
        *conversations,
        {"type": "post_query_info", "conversations": len(conversations)},
    ]
    return json.dumps(items).encode()


def _conversation(cid: int, **fields: Any) -> dict[str, Any]:
    return {"type": "conversation", "id": cid, "messages": [], **fields}


def test_small_conversations_are_parsed_in_small_reads() -> None:
    body = _export(*(_conversation(i, note="x" * 500) for i in range(1, 2001)))
    reader = _RecordingReader(body)
    stream = ExportStream(reader, None, source="test", split=False)
    assert [c["id"] for c in stream] == list(range(1, 2001))
    assert len(body) > 10 * PARSE_READ  # many reads...
    assert set(reader.sizes) == {PARSE_READ}  # ...all of the small size


def test_reads_grow_while_one_conversation_spans_them_and_shrink_after() -> None:
    huge = "y" * (6 * 1024 * 1024)
    body = _export(_conversation(1, note=huge), *(_conversation(i) for i in range(2, 5000)))
    reader = _RecordingReader(body)
    stream = ExportStream(reader, None, source="test", split=False)
    conversations = list(stream)
    assert conversations[0]["note"] == huge
    assert [c["id"] for c in conversations] == list(range(1, 5000))
    biggest = max(reader.sizes)
    assert PARSE_READ * 16 <= biggest <= MAX_PARSE_READ
    # Doubling: about log2(6 MiB / 64 KiB) reads for the big string, not 96 fixed ones.
    assert reader.sizes.index(biggest) < 12
    assert reader.sizes[-1] == PARSE_READ  # back to small reads once it came out


def test_c_parser_promises_finite_floats_and_the_python_one_does_not() -> None:
    body = _export(_conversation(1, score=0.5))
    assert ExportStream(io.BytesIO(body), None, source="test").finite_floats is True
    pure = ExportStream(io.BytesIO(body), None, source="test", pure_python=True)
    assert pure.finite_floats is False
    assert [c["score"] for c in pure] == [0.5]


def test_the_fallback_prefix_goes_out_in_reads_of_the_size_asked() -> None:
    prefix = bytes(range(256)) * 4096  # 1 MiB, as split_elements may hand over
    reader = Prefixed(prefix, io.BytesIO(b"rest"))
    pieces = [reader.read(PARSE_READ) for _ in range(17)]
    assert [len(p) for p in pieces[:16]] == [PARSE_READ] * 16
    assert b"".join(pieces[:16]) == prefix
    assert pieces[16] == b"rest"


def test_a_large_read_of_a_gzip_body_is_exact() -> None:
    body = json.dumps([{"n": i, "s": "x" * (i % 97)} for i in range(200_000)]).encode()
    packed = gzip.compress(body, 6)
    chunks = iter([packed[i : i + 16384] for i in range(0, len(packed), 16384)])
    reader = DecodedReader(chunks, "gzip", max_bytes=len(body))
    first = reader.read(MAX_PARSE_READ)  # 8 MiB, assembled from many decompressed pieces
    assert first == body[:MAX_PARSE_READ]
    assert first + reader.read(len(body)) == body


def _decoded(packed: bytes, encoding: str = "gzip", chunk: int = 7000) -> bytes:
    """The whole decoded body; a reader that loops instead of ending fails after 10 s."""

    def stuck(signum: int, frame: Any) -> None:
        raise AssertionError("the reader did not reach the end of the body in 10 s")

    chunks = iter([packed[i : i + chunk] for i in range(0, len(packed), chunk)])
    reader = DecodedReader(chunks, encoding, max_bytes=10**9)
    pieces = []
    previous = signal.signal(signal.SIGALRM, stuck)
    signal.alarm(10)
    try:
        while piece := reader.read(65536):
            pieces.append(piece)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    return b"".join(pieces)


_BODY = json.dumps([{"n": i, "s": "x" * (i % 97)} for i in range(5_000)]).encode()  # 280 kB


@pytest.mark.parametrize(
    ("packed", "chunk"),
    [
        (gzip.compress(_BODY) + b"\n", 7000),
        (gzip.compress(_BODY) + b"not gzip", 7000),
        (gzip.compress(_BODY[:100_000]) + gzip.compress(_BODY[100_000:]), 7000),
        (gzip.compress(_BODY[:100_000]) + gzip.compress(_BODY[100_000:]) + b"\r\n", 7000),
        # The second member's magic bytes split between two chunks.
        (
            gzip.compress(_BODY[:100_000]) + gzip.compress(_BODY[100_000:]),
            len(gzip.compress(_BODY[:100_000])) + 1,
        ),
    ],
    ids=["newline-after", "bytes-after", "two-members", "two-members-newline", "magic-split"],
)
def test_what_follows_a_gzip_stream_is_read_as_members_or_ignored(
    packed: bytes, chunk: int
) -> None:
    """A body that goes on after its gzip stream ends (a newline, a second member) once made
    the reader loop for ever at full CPU: zlib keeps the bytes after the end in
    unconsumed_tail, and decompressing them again never consumes them."""
    assert _decoded(packed, chunk=chunk) == _BODY


def test_a_second_gzip_member_cut_short_is_a_broken_stream() -> None:
    packed = gzip.compress(_BODY[:100_000]) + gzip.compress(_BODY[100_000:])[:60]
    with pytest.raises(BrokenStreamError, match="truncated download"):
        _decoded(packed)


@pytest.mark.parametrize("error_at", [1, 2], ids=["between", "after-the-last"])
def test_an_error_element_fails_the_stream_even_when_it_then_completes(error_at: int) -> None:
    """The API reported an error mid-stream, then carried on: every conversation arrived,
    post_query_info too, the counts match, and still the window is not trusted."""
    conversations: list[Any] = [_conversation(1), _conversation(2)]
    conversations.insert(error_at, {"type": "error", "message": "shard 3 timed out"})
    body = json.dumps(
        [
            {"type": "query_info", "conversations": 2},
            *conversations,
            {"type": "post_query_info", "conversations": 2},
        ]
    ).encode()
    stream = ExportStream(io.BytesIO(body), None, source="test")
    received: list[int] = []
    with pytest.raises(BrokenStreamError, match=r"reported an error mid-stream.*shard 3 timed out"):
        received.extend(c["id"] for c in stream)
    assert received == [1, 2][:error_at]
    assert not stream.complete
