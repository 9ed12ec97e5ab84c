"""split_elements: orjson for the pieces it can cut, ijson for the rest, the same result."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterator
from typing import Any

import ijson
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etl.extract import ExportStream
from etl.extract.errors import BrokenStreamError, ExactParseNeeded, ExportDataError
from etl.extract.split import _MAX_PIECE, finer_than_microseconds, split_elements


def _body(elements: list[Any], indent: int | None = None) -> bytes:
    if indent is None:
        return json.dumps(elements, separators=(",", ":"), ensure_ascii=False).encode()
    return json.dumps(elements, indent=indent).encode()


def _export(conversations: list[dict[str, Any]]) -> list[Any]:
    return [
        {"type": "query_info", "conversations": len(conversations)},
        *conversations,
        {"type": "post_query_info", "conversations": len(conversations)},
    ]


def _conversation(cid: int, **fields: Any) -> dict[str, Any]:
    return {"type": "conversation", "id": cid, "messages": [], **fields}


class _Recorder:
    """split_elements' fallback: remembers what it was handed, then parses as ijson would."""

    def __init__(self, body: bytes) -> None:
        self._reader = io.BytesIO(body)
        self.prefixes: list[bytes] = []

    def fallback(self, prefix: bytes) -> Iterator[Any]:
        self.prefixes.append(prefix)
        return ijson.items(prefix + self._reader.read(), "item", use_float=True)

    def split(self) -> list[Any]:
        return [element for element, _ in self.split_with_text()]

    def split_with_text(self) -> list[tuple[Any, bytes | None]]:
        exact = lambda piece: next(ijson.items(b"[" + piece + b"]", "item"))  # noqa: E731
        return list(split_elements(self._reader, self.fallback, exact))


@pytest.mark.parametrize("indent", [None, 2], ids=["compact", "indented"])
def test_only_the_last_conversation_and_post_query_info_go_to_ijson(indent: int | None) -> None:
    elements = _export([_conversation(i, note=f"n{i}") for i in range(1, 301)])
    recorder = _Recorder(_body(elements, indent))
    assert recorder.split() == elements
    (prefix,) = recorder.prefixes  # the body's tail, whole: nothing was read after it
    assert list(ijson.items(prefix, "item")) == elements[-2:]


def test_a_body_written_another_way_goes_to_ijson_whole() -> None:
    # "type" is not the first key: no boundary is recognised, ijson parses everything.
    conversations = [{"id": i, "type": "conversation", "messages": []} for i in range(1, 50)]
    elements = _export(conversations)
    recorder = _Recorder(_body(elements))
    assert recorder.split() == elements
    assert len(recorder.prefixes) == 1 and recorder.prefixes[0].startswith(b"[{")


def test_a_conversation_nested_in_a_conversation_hands_over_to_ijson() -> None:
    inner = _conversation(99)
    conversations = [
        _conversation(1),
        _conversation(2, attachments=[{"a": 1}, inner]),  # "},{"type":"conversation"" inside
        _conversation(3),
        _conversation(4),
    ]
    elements = _export(conversations)
    recorder = _Recorder(_body(elements))
    assert recorder.split() == elements
    (prefix,) = recorder.prefixes
    assert prefix.startswith(b'[{"type":"conversation","id":2,')


def test_a_conversation_larger_than_the_piece_limit_goes_to_ijson() -> None:
    huge = "z" * (_MAX_PIECE + 256 * 1024)  # past the limit by more than one read
    elements = _export([_conversation(1), _conversation(2, note=huge), _conversation(3)])
    recorder = _Recorder(_body(elements))
    assert recorder.split() == elements
    assert recorder.prefixes[0].startswith(b'[{"type":"conversation","id":2,')


def test_long_digit_runs_are_parsed_exactly() -> None:
    big = 2**64 + 1  # orjson alone would read this as a float
    elements = _export(
        [_conversation(1, score=big, phone="0047123456789012345678"), _conversation(2)]
    )
    recorder = _Recorder(_body(elements))
    got = recorder.split()
    assert got == elements
    assert type(got[1]["score"]) is int and got[1]["score"] == big


def test_each_element_orjson_parsed_comes_with_its_text_and_no_other_does() -> None:
    big = 2**64 + 1
    conversations = [_conversation(1), _conversation(2, score=big), _conversation(3)]
    pairs = _Recorder(_body(_export(conversations))).split_with_text()
    assert [element for element, _ in pairs] == _export(conversations)
    query_info, first, exact, last, post_query_info = pairs
    for element, text in (query_info, first):  # cut out and parsed by orjson
        assert text is not None and orjson.loads(text) == element
    # Parsed exactly (a long digit run), by ijson (the body's tail): no text to parse again.
    assert [exact[1], last[1], post_query_info[1]] == [None, None, None]


# -- against the ijson path, through ExportStream (hypothesis) ---------------------------------


_text = st.text(
    st.sampled_from(["a", "é", "😀", '"', "\\", "{", "}", ",", "\n", "\x00"]), max_size=6
)
_number = (
    st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([0.1, -0.0, 1e300, 5e-324, 2**63 - 1, -(2**63), 2**64 - 1])
)
_value: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | _number | _text,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(["type", "id", "x", "conversation"]), children, max_size=3
        )
    ),
    max_leaves=8,
)
_special = st.sampled_from(
    [
        {"type": "conversation", "id": 5},  # a conversation nested in a conversation
        "conversation",
        '"},{"type":"conversation"',
        "\ud800",  # a lone surrogate: the window is re-read the pure-Python way
    ]
)
_conversations = st.lists(
    st.builds(
        lambda cid, fields: {"type": "conversation", "id": cid, "messages": [], **fields},
        st.integers(1, 10**6),
        st.dictionaries(
            st.sampled_from(["a", "b", "type_", "user_information"]), _value | _special
        ),
    ),
    max_size=6,
)


def _outcome(body: bytes, split: bool) -> tuple[str, Any]:
    try:
        stream = ExportStream(io.BytesIO(body), None, source="test", split=split)
        return "ok", (stream.query_info, list(stream), stream.post_query_info)
    except (BrokenStreamError, ExportDataError, ExactParseNeeded) as exc:
        return "error", type(exc)


def _same(a: Any, b: Any) -> bool:
    """Equal, with floats compared by their bits (-0.0 is not 0.0) and types kept apart."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b or (math.isnan(a) and math.isnan(b)) if a != 0 else str(a) == str(b)
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conversations=_conversations, indent=st.sampled_from([None, None, 1]))
# Mostly compact, as the simulator writes; indented as the vendor's documentation shows.
def test_split_parsing_gives_what_the_ijson_path_gives(
    conversations: list[dict[str, Any]], indent: int | None
) -> None:
    elements = _export(conversations)
    separators = (",", ":") if indent is None else None
    try:
        data = json.dumps(elements, indent=indent, separators=separators, ensure_ascii=False)
        data = data.encode()
    except UnicodeEncodeError:  # a lone surrogate: as the API sends it, an escape
        data = json.dumps(elements, indent=indent, separators=separators).encode()
    fast, reference = _outcome(data, split=True), _outcome(data, split=False)
    assert fast[0] == reference[0]
    assert _same(fast[1], reference[1]) if fast[0] == "ok" else fast[1] is reference[1]


def test_conversation_as_a_key_or_a_value_is_not_taken_for_a_boundary() -> None:
    conversations = [
        _conversation(i, notes={"conversation": "x", "kind": "conversation"}) for i in range(1, 40)
    ]
    elements = _export(conversations)
    recorder = _Recorder(_body(elements))
    assert recorder.split() == elements
    (prefix,) = recorder.prefixes  # only the tail: the splitter did not stall on the key
    assert list(ijson.items(prefix, "item")) == elements[-2:]


def test_finer_than_microseconds_counts_times_not_numbers() -> None:
    text = (
        b'{"time":"2021-01-28T17:20:48.812727123+01:00","lat":59.9138688,"lon":10.7522454,'
        b'"created":"2021-01-28T17:20:48.8127271Z","ok":"2021-01-28T17:20:48.812727+01:00"}'
    )
    assert finer_than_microseconds(text) == 2
