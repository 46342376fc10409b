"""Variance, skewness and kurtosis from exact power sums.

Online merges per-tile sums of ``x``, ``x**2``, ``x**3`` and ``x**4``; offline sums a
window's values directly. Both hand the exact rational sums to these functions, which round
once at the end, so the two agree to the bit whatever the order or grouping of the events,
and cancellation (a large mean, a small spread) cannot creep in.

Definitions (Spark's and Chronon's): ``variance`` is the sample variance (``n - 1``, null
below two values); ``skew`` is the population skewness ``m3 / m2**1.5`` and ``kurtosis`` the
population excess kurtosis ``m4 / m2**2 - 3``, with ``mk`` the k-th central moment; both are
null when every value is equal (``m2 == 0``), where they are undefined.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

__all__ = [
    "Dyadic",
    "add_dyadic",
    "as_fraction",
    "central_moments",
    "dyadic",
    "kurtosis",
    "skew",
    "text_of",
    "variance",
]


Dyadic = tuple[int, int]
"""``(m, e)``, the exact value ``m / 2**e``: how lookups accumulate power sums of one window.

Every double is a dyadic rational, and so are its powers and their sums, so the stored
``[numerator, denominator]`` of a power sum always has a power-of-two denominator. Adding
dyadics needs a shift, not the ``gcd`` a ``Fraction`` addition computes."""


def dyadic(state: Any) -> Dyadic:
    """A stored power sum (or an accumulated one) as a ``Dyadic``."""
    if isinstance(state, tuple):
        return state
    numerator, denominator = int(state[0]), int(state[1])
    exponent = denominator.bit_length() - 1
    if denominator != 1 << exponent:  # not a sum of doubles' powers: never written so
        msg = f"power sum {state!r} has a denominator that is not a power of two"
        raise ValueError(msg)
    return numerator, exponent


def add_dyadic(a: Dyadic, state: Any) -> Dyadic:
    """``a`` plus a stored (or accumulated) power sum, exactly."""
    m, e = dyadic(state)
    if e > a[1]:
        return (a[0] << (e - a[1])) + m, e
    return a[0] + (m << (a[1] - e)), a[1]


def as_fraction(state: Any) -> Fraction:
    """An exact sum as stored: ``[numerator, denominator]`` text, a ``Dyadic``, Shewchuk
    partials (a list of floats), an int, or ``None`` for nothing."""
    if state is None:
        return Fraction(0)
    if isinstance(state, tuple):
        return Fraction(state[0], 1 << state[1])
    if isinstance(state, list):
        if state and isinstance(state[0], str):
            return Fraction(int(state[0]), int(state[1]))
        total: Dyadic = (0, 0)
        for part in state:  # each float is dyadic: shifts, not a Fraction's gcd per addition
            numerator, denominator = float(part).as_integer_ratio()
            total = add_dyadic(total, (numerator, denominator.bit_length() - 1))
        return Fraction(total[0], 1 << total[1])
    return Fraction(state)


def text_of(value: Fraction) -> list[str]:
    """The stored form of an exact sum: text, since numerators outgrow 64 bits."""
    return [str(value.numerator), str(value.denominator)]


def variance(n: int, s1: Fraction, s2: Fraction) -> float | None:
    """Sample variance, correctly rounded from the exact rational value."""
    if n < 2:
        return None
    return float((s2 - s1 * s1 / n) / (n - 1))


def central_moments(n: int, sums: Sequence[Fraction]) -> tuple[Fraction, Fraction, Fraction]:
    """Exact ``(m2, m3, m4)`` (population central moments) from ``sum(x**k)``, k = 1..4
    (``sums`` may stop at k = 3; m4 is then 0)."""
    mean = sums[0] / n
    e2 = sums[1] / n
    e3 = sums[2] / n
    m2 = e2 - mean * mean
    m3 = e3 - 3 * mean * e2 + 2 * mean**3
    m4 = Fraction(0)
    if len(sums) > 3:
        e4 = sums[3] / n
        m4 = e4 - 4 * mean * e3 + 6 * mean * mean * e2 - 3 * mean**4
    return m2, m3, m4


def skew(n: int, sums: Sequence[Fraction]) -> float | None:
    """Population skewness ``m3 / m2**1.5``."""
    if n < 1:
        return None
    m2, m3, _ = central_moments(n, sums)
    if m2 == 0:
        return None
    # From the exact, scale-free ratio m3**2 / m2**3: float(m2) alone can underflow.
    return math.copysign(math.sqrt(float(m3 * m3 / m2**3)), m3)


def kurtosis(n: int, sums: Sequence[Fraction]) -> float | None:
    """Population excess kurtosis ``m4 / m2**2 - 3``."""
    if n < 1:
        return None
    m2, _, m4 = central_moments(n, sums)
    if m2 == 0:
        return None
    return float(m4 / (m2 * m2) - 3)
