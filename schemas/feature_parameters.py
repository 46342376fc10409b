"""The parameters each aggregation function takes, and the checks of a feature's values.

Kept apart from ``schemas.definitions`` so that the table of which function takes which
parameter, and every message that names a missing or misplaced one, live in one place.
"""

from __future__ import annotations

from typing import Any

from headwater.schemas.aggregations import N_FUNCTIONS

__all__ = ["PARAMETER_NAMES", "parameter_problem"]

PARAMETER_NAMES = (
    "n",
    "percentiles",
    "accuracy",
    "precision",
    "k",
    "max_keys",
    "where",
    "offset_ms",
    "resolution_ms",
)
"""A ``Feature``'s attributes beyond name, function, field and window that change its values
(the catalog stores them, ``apply``'s plan shows them)."""

_PARAMETERS: dict[str, tuple[str, ...]] = {
    "n": tuple(sorted(N_FUNCTIONS)),
    "percentiles": ("approx_percentile",),
    "accuracy": ("approx_percentile",),
    "precision": ("approx_count_distinct",),
    "k": ("top_k",),
    "max_keys": ("histogram",),
}
"""Which functions take each parameter (any other function refuses it)."""
_EXAMPLES = {
    "n": "n: 5",
    "percentiles": "percentiles: [0.5, 0.9, 0.99]",
    "k": "k: 5",
    "where": "where: \"status == 'declined'\"",
}


def parameter_problem(feature: Any) -> str | None:
    """What is wrong with a ``Feature``'s function, field, parameters and window, or ``None``:
    a parameter its function does not take, one it needs and lacks, or a value out of range
    (the message gives an example)."""
    f = feature.function
    for parameter, functions in _PARAMETERS.items():
        given = getattr(feature, parameter)
        if f in functions and parameter in _EXAMPLES and not given:
            return f"{f} needs {parameter}, e.g. {_EXAMPLES[parameter]}"
        if f not in functions and given not in (None, ()):
            return f"{parameter} is only for {', '.join(functions)}, not {f}"
    if feature.n is not None and feature.n < 1:
        return f"{f} needs n, a count of 1 or more, e.g. n: 5"
    if feature.k is not None and feature.k < 1:
        return "top_k needs k, a count of 1 or more, e.g. k: 5"
    if feature.max_keys is not None and feature.max_keys < 1:
        return "max_keys must be 1 or more, e.g. max_keys: 20"
    if any(not 0 <= q <= 1 for q in feature.percentiles):
        return f"percentiles must be between 0 and 1, e.g. [0.5, 0.99]; got {list(feature.percentiles)}"
    if feature.accuracy is not None and not 0 < feature.accuracy < 1:
        return f"accuracy is a relative error between 0 and 1, e.g. 0.01; got {feature.accuracy}"
    if feature.precision is not None and not 4 <= feature.precision <= 18:
        return (
            f"precision must be 4 to 18 (2**precision registers), e.g. 12; got {feature.precision}"
        )
    if f in ("count_if", "sum_if") and not feature.where:
        return f"{f} needs a condition, e.g. {_EXAMPLES['where']}"
    if feature.field is None and f not in ("count", "count_if"):
        return f"function {f!r} needs a field; only count and count_if work without one"
    if feature.window_ms is not None and feature.window_ms <= 0:
        return f"window must be positive, got {feature.window_ms} ms"
    if feature.window_ms is None and (feature.offset_ms or feature.resolution_ms):
        what = "offset" if feature.offset_ms else "resolution"
        return f"{what} needs a window, e.g. window: 1d, offset: 7d"
    if feature.offset_ms is not None and feature.offset_ms < 0:
        return f"offset must be 0 or more, got {feature.offset_ms} ms"
    if feature.resolution_ms is not None and feature.resolution_ms <= 0:
        return f"resolution must be positive, got {feature.resolution_ms} ms"
    return None
