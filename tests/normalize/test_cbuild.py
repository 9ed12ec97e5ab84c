"""The compiled row builder gives exactly the Python builder's rows, or hands back to it."""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from etl.fakeapi.dataset import Dataset
from etl.fakeapi.synth import DatasetSpec
from etl.normalize import NormalizeError
from etl.normalize.core import _build, build_rows_py
from tests.conftest import SEED_EXPORT, needs_accelerator

pytestmark = needs_accelerator(_build is not None)


def test_ci_builds_the_extension() -> None:
    assert _build is not None, "etl/normalize/_cbuild.c was not built: run make install"


_scalar = (
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(["", "x", "question", "answer", "text", "link", "intent", "button"])
)
_json = st.recursive(
    _scalar,
    lambda c: (
        st.lists(c, max_size=2) | st.dictionaries(st.sampled_from(["a", "_b"]), c, max_size=2)
    ),
    max_leaves=4,
)
_time = st.sampled_from(
    [
        "2024-03-01T10:00:00+01:00",
        "2024-03-31T23:10:00-01:00",
        "2024-12-31T23:59:59.999999-00:30",
        "2024-03-01T00:30:00.250000+02:00",
        "2024-02-29T23:59:59-05:00",
        "2024-03-01T10:00:00Z",
        "2024-03-01T10:00:00+00:00",
        "2024-03-01T10:00:00",  # no offset: a data error, raised by the Python builder
        None,
    ]
)


def _object(
    keys: dict[str, st.SearchStrategy[Any]], required: tuple[str, ...] = ()
) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with some of `keys` (mostly well-typed, sometimes misfits) and unknown keys."""

    def value(name: str) -> st.SearchStrategy[Any]:
        if keys[name] is _time:  # a misfit timestamp is a data error: rare enough in _time
            return _time
        return st.one_of(keys[name], keys[name], keys[name], _json)

    extra = {"unknown": _json, "_private": _json, "__x": _json}
    return st.fixed_dictionaries(
        {name: value(name) for name in required},
        optional={**{name: value(name) for name in keys if name not in required}, **extra},
    )


_ids = st.integers(1, 5) | st.just(2**63) | st.just("7")
_intent = _object(
    {"type": st.just("intent"), "id": _ids, "title": st.text(max_size=2), "inherit_skill": _json},
    required=("id",),
)
_action = _object(
    {
        "type": st.just("action"),
        "id": _ids,
        "action_type": st.just("content"),
        "language": st.just("en"),
        "transfer_to_human": st.booleans(),
    },
    required=("id",),
)
_refs = {
    "intents": _object({"predicted": _intent, "came_from": _intent}, required=("predicted",)),
    "actions": _object({"displayed": _action, "came_from": _action}, required=("displayed",)),
}
_button = _object(
    {"type": st.just("button"), "id": _ids, "text": st.just("b"), "hidden": _json},
    required=("id",),
)
_content = _object(
    {
        "type": st.sampled_from(["text", "image", "video", "other"]),
        "time": _time,
        "text": st.text(max_size=3),
        "buttons": st.lists(_button | _json, max_size=3),
    },
    required=("type", "buttons"),
)
_analysis = _object({"intent": _intent, "processed": st.just("p"), "winner": st.booleans()})
_question = _object(
    {
        "type": st.just("question_analysis"),
        "input": st.text(max_size=3),
        "labels": _json,
        "analysis": st.lists(_analysis | _json, max_size=3),
    },
    required=("analysis",),
)
_message = _object(
    {
        "id": st.integers(1, 8) | _json,
        "type": st.sampled_from(["question", "answer", "answer", "event"]),
        "time": _time,
        "question": _question,
        **_refs,
        "button_clicked": _button,
        "content": st.lists(_content | _json, max_size=3),
    },
    required=("type", "time", "content"),
)
_conversation = _object(
    {
        "type": st.just("conversation"),
        "reference": st.just("r"),
        "reviewed": st.booleans(),
        "user_information": _json,
        "time": _object({"created": _time, "last_message_created": _time}),
    }
)


def _numbered(drawn: list[tuple[Any, int]]) -> list[Any]:
    """Most messages get a unique id (else nearly every conversation would be refused)."""
    messages = []
    for position, (message, die) in enumerate(drawn):
        if isinstance(message, dict) and die:
            message = {**message, "id": position + 1}
        messages.append(message)
    return messages


_messages = st.lists(st.tuples(_message | _json, st.integers(0, 9)), max_size=4).map(_numbered)


def _same_as_python(conv: dict[str, Any]) -> None:
    assert _build is not None
    messages = conv["messages"]
    try:
        expected: Any = build_rows_py(conv, conv["id"], messages)
    except NormalizeError as exc:
        expected = exc
    built = _build(conv, conv["id"], messages)
    if built is None:  # handed back: only for what the Python builder refuses
        assert isinstance(expected, NormalizeError)
    else:
        # repr, not ==: the `extra` dicts' key order and True vs 1 must match too.
        assert repr(built) == repr(expected)


@settings(max_examples=600, deadline=None)
@given(_conversation, _messages)
def test_compiled_builder_matches_python(conv: dict[str, Any], messages: list[Any]) -> None:
    _same_as_python({**conv, "id": 1, "messages": messages})


# Realistic conversations from the simulator (every message and content type it makes),
# then mutated at random places: a value replaced, a key dropped, an unknown or "_" key added.
_REAL = [
    json.loads(Dataset.build(DatasetSpec(seed=seed, days=1, per_day=6)).payload(i))
    for seed in (1, 2)
    for i in range(6)
]


def _places(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    places = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            places += _places(item, (*path, key))
    elif isinstance(value, list):
        for at, item in enumerate(value):
            places += _places(item, (*path, at))
    return places


@st.composite
def _mutated(draw: st.DrawFn) -> dict[str, Any]:
    conv = copy.deepcopy(draw(st.sampled_from(_REAL)))
    for _ in range(draw(st.integers(1, 4))):
        places = [p for p in _places(conv)[1:] if p not in (("id",), ("messages",))]
        path = draw(st.sampled_from(places))
        parent = conv
        for step in path[:-1]:
            parent = parent[step]
        last = path[-1]
        action = draw(st.sampled_from(["replace", "drop", "private", "unknown"]))
        if action == "replace":
            parent[last] = draw(_json | _time)
        elif action == "drop" and isinstance(parent, dict) and last not in ("id", "messages"):
            del parent[last]
        elif isinstance(parent, dict):
            parent["_" + str(last) if action == "private" else "unknown"] = draw(_json)
    return conv


@settings(max_examples=600, deadline=None)
@given(_mutated())
def test_compiled_builder_matches_python_on_mutated_real_conversations(
    conv: dict[str, Any],
) -> None:
    _same_as_python(conv)


def test_real_conversations_take_the_compiled_path() -> None:
    assert _build is not None
    for conv in _REAL:
        assert _build(conv, conv["id"], conv["messages"]) is not None
        _same_as_python(conv)


def test_the_documented_example_takes_the_compiled_path() -> None:
    assert _build is not None
    export = json.loads(SEED_EXPORT.read_text())
    conversations = [item for item in export if item.get("type") == "conversation"]
    assert conversations
    for conv in conversations:
        built = _build(conv, conv["id"], conv["messages"])
        assert built is not None
        assert repr(built) == repr(build_rows_py(conv, conv["id"], conv["messages"]))


def test_rows_holding_dicts_stay_tracked_by_the_collector() -> None:
    # Rows are made with None in every column and filled afterwards; a collection in between
    # may untrack them, and a row holding dicts must be tracked again (found by review).
    import gc

    assert _build is not None
    conv = {
        "id": 1,
        "zz": {"a": 1},
        "messages": [
            {
                "id": 1,
                "type": "answer",
                "time": "2024-03-01T10:00:00+00:00",
                "weird": {"a": [1]},
                "actions": {"displayed": {"id": 3, "type": "action", "odd": {"x": 1}}},
                "content": [{"type": "text", "text": "hi", "more": {"b": 2}}],
            }
        ],
    }
    thresholds = gc.get_threshold()
    gc.set_threshold(1, 1, 1)
    try:
        built = _build(conv, 1, conv["messages"])
    finally:
        gc.set_threshold(*thresholds)
    assert built is not None
    rows = [built[0], *built[1], *built[2], *built[6]]  # conversation, message, content, action
    assert len(rows) == 4
    for row in rows:
        assert any(isinstance(value, dict) for value in row)
        assert gc.is_tracked(row)
