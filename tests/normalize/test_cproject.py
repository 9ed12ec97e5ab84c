"""The compiled project() gives what the Python reference gives, on random objects and times."""

from __future__ import annotations

from collections import OrderedDict
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from etl.normalize import project as project_module
from etl.normalize.columns import BOOL, INT, JSON, TEXT, TIME
from etl.normalize.project import SKIP, TAG, BadField, Fields, parse_time, project_py
from tests.conftest import needs_accelerator

compiled = project_module.COMPILED

pytestmark = needs_accelerator(compiled is not None)


def test_ci_builds_the_extension() -> None:
    # `make install` compiles it; without it every run is several times slower.
    assert compiled is not None, "etl/normalize/_cproject.c was not built: run make install"


FIELDS: Fields = {
    "t": (0, TEXT),
    "i": (1, INT),
    "b": (2, BOOL),
    "w": (3, TIME),
    "j": (4, JSON),
    "s": (-1, SKIP),
    "type": (-1, TAG),
}

_scalar = (
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64)
    | st.floats(allow_nan=False)
    | st.text(max_size=5)
)
_value = st.recursive(
    _scalar, lambda c: st.lists(c, max_size=2) | st.dictionaries(st.text(max_size=2), c, max_size=2)
)
_offsets = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
_aware = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
).flatmap(lambda d: _offsets.map(lambda tz: d.astimezone(tz)))


def _api_form(moment: datetime, with_fraction: bool) -> str:
    return moment.isoformat(timespec="microseconds" if with_fraction else "seconds")


_time_text = st.builds(_api_form, _aware, st.booleans()) | st.sampled_from(
    [
        "2024-02-29T23:30:00+01:00",
        "2023-02-29T10:00:00+00:00",  # no such day
        "0001-01-01T00:30:00+01:00",  # before year 1 in UTC
        "9999-12-31T23:30:00-01:00",  # after 9999 in UTC
        "2024-03-01T00:00:00.5+00:00",
        "2024-03-01T00:00:00Z",
        "2024-03-01T00:00:00",
        "2024-03-01 00:00:00+00:00",
        "2024-13-01T00:00:00+00:00",
        "2024-03-01T24:00:00+00:00",
        "2024-03-01T00:00:60+00:00",
        "2024-03-01T00:00:00+24:00",
        "２０２４-03-01T00:00:00+00:00",
        "not a time",
    ]
)
_objects = st.dictionaries(
    st.sampled_from([*FIELDS, "other", "_x"]),
    _value | _time_text | st.just("conversation"),
    max_size=8,
)


def _run(function: Any, obj: Any, tag: str | None) -> tuple[Any, ...]:
    row: list[Any] = [None] * 5
    try:
        rest = function(obj, FIELDS, row, tag)
    except BadField as exc:
        return ("BadField", exc.path, exc.problem)
    return (rest, row, [type(v) for v in row], [getattr(v, "tzinfo", None) for v in row])


@settings(max_examples=600, deadline=None)
@given(_objects, st.sampled_from([None, "conversation"]))
@example({"t": 1, "i": True, "b": 1, "j": None, "s": [1], "type": "other"}, "conversation")
@example({"i": 2**63, "other": 1}, None)
@example({"i": -(2**63), "w": "2024-03-01T00:00:00+00:00"}, None)
def test_compiled_project_matches_python(obj: dict[str, Any], tag: str | None) -> None:
    assert _run(compiled, obj, tag) == _run(project_py, obj, tag)


@settings(max_examples=600, deadline=None)
@given(_time_text)
def test_compiled_timestamps_match_parse_time(text: str) -> None:
    assert _run(compiled, {"w": text}, None) == _run(project_py, {"w": text}, None)


def test_the_fast_path_converts_offsets_across_days_months_and_leap_years() -> None:
    for text in (
        "2024-03-01T00:30:00+01:00",  # back into a leap February
        "2023-03-01T00:30:00+01:00",
        "2024-12-31T23:30:00-01:00",  # forward into a new year
        "2024-01-01T00:00:00.000001+23:59",
    ):
        row: list[Any] = [None] * 5
        assert compiled({"w": text}, FIELDS, row) is None
        assert row[3] == parse_time(text, "w") == datetime.fromisoformat(text)
        assert row[3].tzinfo is UTC


def test_mappings_other_than_dict_take_the_python_path() -> None:
    obj = OrderedDict([("other", 1), ("t", "x")])
    obj.move_to_end("other")
    assert _run(compiled, obj, None) == _run(project_py, obj, None)
    row: list[Any] = [None] * 5
    assert list(compiled(obj, FIELDS, row) or {}) == ["other"]


class _Meddler:
    """A value whose comparison changes the object and the row being projected."""

    def __init__(self, obj: dict[str, Any], row: list[Any]) -> None:
        self.obj, self.row = obj, row

    def __eq__(self, other: object) -> bool:
        self.obj.clear()
        self.row.clear()
        return False

    __hash__ = None  # type: ignore[assignment]


def test_objects_that_are_not_plain_json_take_the_python_path() -> None:
    # A value with its own __eq__ could free what the C loop reads; such an object goes to the
    # Python version, which fails as Python code does (found by review: it crashed before).
    fields: Fields = {"type": (-1, TAG), "t": (0, TEXT)}
    for function in (compiled, project_py):
        row: list[Any] = [None, None]
        obj: dict[str, Any] = {}
        obj["type"] = _Meddler(obj, row)
        obj["t"] = "x"
        with pytest.raises(RuntimeError, match="changed size"):
            function(obj, fields, row, "conversation")
