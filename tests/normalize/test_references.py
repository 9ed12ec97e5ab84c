"""A conversation's references without the outdated ones fold to the same dimension rows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from etl.load.loader import ReferenceFold
from etl.normalize.references import latest_references

T1 = datetime(2024, 5, 1, 10, tzinfo=UTC)
T2 = datetime(2024, 5, 1, 11, tzinfo=UTC)

Row = tuple[Any, ...]


def _folded(*batches: list[Row]) -> list[Row]:
    """One row per id, in id order (the loaders upsert them in any order)."""
    fold = ReferenceFold()
    for rows in batches:
        fold.add(rows)
    return sorted(fold.rows(), key=lambda row: row[0])


def test_the_latest_of_equal_references_is_kept_in_its_place() -> None:
    rows = [
        (7, "Hello", True, T2, None),
        (8, "Other", None, T1, None),
        (7, "Hello", True, T1, None),  # outdated by the first
        (7, "Hello", True, T2, None),  # ties with the first, comes later: kept
        (7, "Hi", True, T1, None),  # other values
    ]
    assert latest_references(rows) == [rows[1], rows[3], rows[4]]


def test_a_dated_reference_outdates_an_undated_one_and_not_the_other_way() -> None:
    undated, dated = (7, "Hello", None, None, None), (7, "Hello", None, T1, None)
    assert latest_references([dated, undated]) == [dated]
    assert latest_references([undated, dated]) == [dated]


def test_a_reference_with_extra_is_always_kept() -> None:
    rows = [
        (7, "Hello", None, T2, {"confidence": 0.9}),
        (7, "Hello", None, T2, {"confidence": 0.9}),
    ]
    assert latest_references(rows) == rows


def test_nothing_to_drop_gives_the_same_list() -> None:
    rows = [(7, "Hello", None, T1, None), (8, "Hello", None, T1, None)]
    assert latest_references(rows) is rows


_TIMES = st.sampled_from([None, T1, T2, datetime(2024, 5, 2, tzinfo=UTC)])
_REFERENCE = st.tuples(
    st.sampled_from([1, 2]),
    st.sampled_from([None, "A", "B"]),
    st.sampled_from([None, True, False]),
    _TIMES,
    st.sampled_from([None, None, None, {"colour": "red"}, {"_original": {"title": '"A"'}}]),
)
_REFERENCES = st.lists(_REFERENCE, max_size=12)


@settings(max_examples=400, deadline=None)
@given(before=_REFERENCES, conversation=_REFERENCES, after=_REFERENCES)
def test_folding_gives_the_same_rows_with_or_without_the_outdated(
    before: list[Row], conversation: list[Row], after: list[Row]
) -> None:
    """Few ids, values and times, so that equal references, ties and undated ones are common;
    other references folded before and after, as other conversations of the window are."""
    kept = latest_references(conversation)
    assert _folded(before, kept, after) == _folded(before, conversation, after)
    assert all(row in conversation for row in kept)
