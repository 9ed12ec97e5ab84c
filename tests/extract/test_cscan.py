"""The compiled digit-run scan answers as the Python reference scan does."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from etl.extract.split import COMPILED_DIGIT_RUN, digit_run_py
from tests.conftest import needs_accelerator

pytestmark = needs_accelerator(COMPILED_DIGIT_RUN is not None)


def test_ci_builds_the_extension() -> None:
    assert COMPILED_DIGIT_RUN is not None, "etl/extract/_cscan.c was not built: run make install"


@settings(max_examples=1000, deadline=None)
@given(
    st.binary(max_size=60).map(lambda b: bytearray(b.replace(b"\xff", b"1234567"))),
    st.integers(0, 70),
    st.integers(0, 70),
    st.integers(1, 25),
)
@example(bytearray(b'{"id":1234567890123456789}'), 0, 26, 19)
@example(bytearray(b'{"id":123456789012345678}'), 0, 25, 19)
@example(bytearray(b"x1234567890123456789x"), 2, 21, 19)  # the run cut by the start
@example(bytearray(b"1234567890123456789x"), 0, 20, 19)  # a run exactly at the start
@example(bytearray(b"x1234567890123456789"), 0, 20, 19)  # and exactly at the end
def test_compiled_scan_matches_python(data: bytearray, start: int, end: int, length: int) -> None:
    assert COMPILED_DIGIT_RUN is not None
    expected = digit_run_py(data, start, end, length)
    assert COMPILED_DIGIT_RUN(data, start, end, length) is expected


def test_a_run_longer_than_the_range_is_not_found_and_negative_bounds_are_refused() -> None:
    import sys

    assert COMPILED_DIGIT_RUN is not None
    assert COMPILED_DIGIT_RUN(b"123", 0, 3, sys.maxsize) is False  # overflowed before review
    assert COMPILED_DIGIT_RUN(b"123", 5, 3, 2) is False
    with pytest.raises(ValueError, match="negative"):
        COMPILED_DIGIT_RUN(b"123", -1, 3, 2)
