"""Native ``fsum_ranges`` (point-in-time sums) against ``math.fsum``: the same bits for every
slice, and ``None`` (Python's path) where ``math.fsum`` has special cases."""

from __future__ import annotations

import math
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from headwater.schemas.native import extension

_floats = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1e16, 1.0, -1e16, 1e-16, 0.1, 0.2, 0.3, -0.0, 5e-324, 1.7976931348623157e308]),
)


def _bytes(values: list[float]) -> bytes:
    return struct.pack(f"<{len(values)}d", *values)


@settings(max_examples=500, deadline=None)
@given(
    st.lists(_floats, max_size=40),
    st.lists(st.tuples(st.integers(0, 40), st.integers(0, 40)), max_size=10),
)
def test_every_slice_is_math_fsum_bit_for_bit(
    values: list[float], slices: list[tuple[int, int]]
) -> None:
    assert extension is not None
    bounds = [(min(i, j, len(values)), min(max(i, j), len(values))) for i, j in slices]
    a, b = [i for i, _ in bounds], [j for _, j in bounds]
    try:
        expected = [math.fsum(values[i:j]) for i, j in bounds]
    except OverflowError:
        assert extension.fsum_ranges(_bytes(values), a, b) is None
        return
    got = extension.fsum_ranges(_bytes(values), a, b)
    assert got is not None
    assert struct.unpack(f"<{len(bounds)}d", got) == tuple(expected)
    assert [math.copysign(1, x) for x in struct.unpack(f"<{len(bounds)}d", got)] == [
        math.copysign(1, x) for x in expected
    ]


def test_half_way_cases_round_like_math_fsum() -> None:
    assert extension is not None
    cases = [[1e-16, 1.0, 1e16], [1.0, 1e100, 1.0, -1e100], [0.1] * 10, [2.0**53, 1.0, 2.0**-60]]
    for values in cases:
        got = extension.fsum_ranges(_bytes(values), [0], [len(values)])
        assert got is not None
        assert struct.unpack("<d", got)[0] == math.fsum(values)


def test_special_values_are_left_to_python() -> None:
    assert extension is not None
    for special in (math.inf, -math.inf, math.nan):
        assert extension.fsum_ranges(_bytes([1.0, special]), [0], [2]) is None
