"""content_digest: the finite-floats shortcut hashes exactly as the full check does."""

from __future__ import annotations

import pickle
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etl.normalize.digest import Digest, content_digest
from etl.normalize.errors import NormalizeError

_json: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.sampled_from(["a", "é", "😀", "\x00", "\ud800", "n", "u", "l"]), max_size=4),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["a", "b", "user_information"]), _json, max_size=3))
def test_finite_floats_shortcut_gives_the_same_digest(fields: dict[str, Any]) -> None:
    conversation = {"id": 7, "messages": [], **fields}
    assert content_digest(conversation, finite_floats=True) == content_digest(conversation)


@pytest.mark.parametrize("number", [float("nan"), float("-inf")])
def test_without_the_promise_a_number_json_cannot_hold_is_refused_not_hashed_as_null(
    number: float,
) -> None:
    """orjson writes NaN and infinities as null: only the full check tells such a conversation
    (ijson's pure-Python parser reads -1e400 as -inf) from one with a null, and refuses it."""
    assert content_digest({"id": 7, "messages": [], "score": None}).plain is True
    with pytest.raises(NormalizeError, match="not finite"):
        content_digest({"id": 7, "messages": [], "score": number})


@settings(max_examples=50, deadline=None)
@given(st.dictionaries(st.sampled_from(["a", "user_information"]), _json, max_size=2))
def test_a_digest_crosses_the_pipe_unchanged(fields: dict[str, Any]) -> None:
    """The extract worker pickles each digest (Digest.__reduce__): every field comes back."""
    digest = content_digest({"id": 7, "messages": [], **fields})
    crossed = pickle.loads(pickle.dumps(digest, pickle.HIGHEST_PROTOCOL))
    assert crossed == digest and type(crossed) is Digest
