"""What "healthy" means for a feature set: the thresholds of ``headwater monitor``.

Written in a definition as metadata (changing it never makes a new version)::

    monitoring:
      freshness: 1h               # newest event older than this: stale
      max_lag: 100000             # messages the workers have not committed yet
      max_dead_letter_rate: 0.01  # dead letters per consumed message of the source
      max_mismatch_rate: 0.001    # online/offline mismatches of `headwater consistency`
      drift: {psi: 0.2, js: 0.1}  # of every field and feature, unless a feature sets its own
    features:
      - {name: spend_1d, function: sum, field: amount, window: 1d, monitoring: {drift: {psi: 0.3}}}

Unset limits are not checked, except drift's PSI, which defaults to
:data:`DEFAULT_PSI` (0.2, the usual "significant shift" mark).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from headwater.schemas.durations import format_duration, parse_duration

__all__ = [
    "DEFAULT_PSI",
    "Monitoring",
    "monitoring_from_dict",
    "monitoring_to_dict",
    "read_monitoring",
]

DEFAULT_PSI = 0.2
_KEYS = {"freshness", "max_lag", "max_dead_letter_rate", "max_mismatch_rate", "drift"}
_FEATURE_KEYS = {"drift"}
_DRIFT_KEYS = {"psi", "js"}
_EXAMPLE = "monitoring: {freshness: 1h, max_lag: 100000, drift: {psi: 0.2}}"


@dataclass(frozen=True, kw_only=True)
class Monitoring:
    """Limits of one feature set (or, with only the drift ones, of one feature)."""

    freshness_ms: int | None = None
    max_lag: int | None = None
    max_dead_letter_rate: float | None = None
    max_mismatch_rate: float | None = None
    drift_psi: float | None = None
    drift_js: float | None = None

    def drift_limits(self, feature: Monitoring | None = None) -> tuple[float, float | None]:
        """(PSI, JS) limits for a column: the feature's own, else the set's, else the
        default PSI."""
        psi = (feature.drift_psi if feature else None) or self.drift_psi or DEFAULT_PSI
        js = (feature.drift_js if feature else None) or self.drift_js
        return psi, js


Report = Callable[[str, str], None]
"""Adds a problem: (where, message)."""


def _rate(report: Report, where: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        report(where, f"expected a share between 0 and 1, e.g. 0.01; got {value!r}")
        return None
    return float(value)


def _positive(report: Report, where: str, value: Any, example: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        report(where, f"expected a positive number, e.g. {example}; got {value!r}")
        return None
    return float(value)


def read_monitoring(
    report: Report, where: str, value: Any, *, feature: bool = False
) -> Monitoring | None:
    """The ``monitoring:`` mapping at ``where`` (a feature's allows only ``drift``);
    ``None`` when absent. Problems are reported with their path and an example."""
    if value is None:
        return None
    allowed = _FEATURE_KEYS if feature else _KEYS
    if not isinstance(value, Mapping):
        report(where, f"expected a mapping, e.g. {_EXAMPLE}; got {value!r}")
        return None
    for key in sorted(set(value) - allowed):
        report(f"{where}.{key}", f"unknown key; monitoring takes {sorted(allowed)}")
    drift = value.get("drift") or {}
    if not isinstance(drift, Mapping):
        report(f"{where}.drift", f"expected a mapping like {{psi: 0.2, js: 0.1}}; got {drift!r}")
        drift = {}
    for key in sorted(set(drift) - _DRIFT_KEYS):
        report(f"{where}.drift.{key}", f"unknown drift measure; use {sorted(_DRIFT_KEYS)}")
    freshness = None
    if value.get("freshness") is not None:
        try:
            freshness = parse_duration(value["freshness"])
        except ValueError as exc:
            report(f"{where}.freshness", str(exc))
    lag = _positive(report, f"{where}.max_lag", value.get("max_lag"), "100000")
    return Monitoring(
        freshness_ms=freshness,
        max_lag=int(lag) if lag is not None else None,
        max_dead_letter_rate=_rate(
            report, f"{where}.max_dead_letter_rate", value.get("max_dead_letter_rate")
        ),
        max_mismatch_rate=_rate(
            report, f"{where}.max_mismatch_rate", value.get("max_mismatch_rate")
        ),
        drift_psi=_positive(report, f"{where}.drift.psi", drift.get("psi"), "0.2"),
        drift_js=_rate(report, f"{where}.drift.js", drift.get("js")),
    )


def monitoring_to_dict(m: Monitoring | None) -> dict[str, Any] | None:
    """As written in YAML (what the catalog stores and ``from_dict`` reads back)."""
    if m is None:
        return None
    out: dict[str, Any] = {}
    if m.freshness_ms is not None:
        out["freshness"] = format_duration(m.freshness_ms)
    for name in ("max_lag", "max_dead_letter_rate", "max_mismatch_rate"):
        if getattr(m, name) is not None:
            out[name] = getattr(m, name)
    drift = {k: v for k, v in (("psi", m.drift_psi), ("js", m.drift_js)) if v is not None}
    if drift:
        out["drift"] = drift
    return out


def monitoring_from_dict(
    data: Mapping[str, Any] | None, *, feature: bool = False
) -> Monitoring | None:
    """The stored form back; stored definitions were checked when applied."""
    problems: list[str] = []
    result = read_monitoring(
        lambda where, msg: problems.append(f"{where}: {msg}"), "monitoring", data, feature=feature
    )
    if problems:
        raise ValueError("; ".join(problems))
    return result
