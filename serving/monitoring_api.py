"""``/v1/stats``, ``/v1/drift`` and ``/v1/monitor``: what the console and scripts read.

Statistics and drift describe a feature set's values, so they need the same grant as
reading all of its features (a ``pii`` feature in the set needs a pii grant): the most
frequent values of a field are the field's values.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from headwater.connectors.catalog import Catalog
from headwater.connectors.offline_delta import DeltaOfflineStore
from headwater.schemas.definitions import FeatureSet
from headwater.schemas.errors import UnknownNameError
from headwater.schemas.settings import Settings
from headwater.serving.drift import drift_body
from headwater.serving.errors import BadRequestError, NotFoundError
from headwater.serving.feature_stats import Population, population, stats_body
from headwater.serving.features import ResolvedFeatures, resolve_features
from headwater.serving.monitor import all_health

__all__ = [
    "DriftRequest",
    "default_windows",
    "feature_set_at",
    "measure_drift",
    "monitoring_router",
]

Authorize = Callable[[Request, ResolvedFeatures], None]


def feature_set_at(catalog: Catalog, name: str, version: int | None) -> FeatureSet:
    """The feature set (the active version, or ``version``, retired ones included).

    Raises:
        NotFoundError: unknown name or version (404, the known ones listed).
    """
    try:
        return catalog.definitions(include_retired=version is not None).feature_set(name, version)
    except UnknownNameError as exc:
        raise NotFoundError(str(exc), field="feature_set") from None


def default_windows(today: datetime | None = None) -> tuple[tuple[str, str], tuple[str, str]]:
    """(reference, current) days when none are given: the 7 days ending two days ago, and
    yesterday with today."""
    day = (today or datetime.now(UTC)).date()
    reference = ((day - timedelta(days=8)).isoformat(), (day - timedelta(days=2)).isoformat())
    current = ((day - timedelta(days=1)).isoformat(), day.isoformat())
    return reference, current


class DriftRequest:
    """Which populations to compare, from query parameters or CLI options."""

    def __init__(
        self,
        *,
        reference: str | None = None,
        reference_start: str | None = None,
        reference_end: str | None = None,
        current: str | None = None,
        current_start: str | None = None,
        current_end: str | None = None,
    ) -> None:
        (ref_start, ref_end), (cur_start, cur_end) = default_windows()
        self.reference_training_set: str | None = None
        if reference is not None:
            kind, _, name = reference.partition(":")
            if kind != "training_set" or not name:
                msg = (
                    f"reference {reference!r} is not understood: write training_set:NAME, or "
                    "give reference_start and reference_end (YYYY-MM-DD)"
                )
                raise BadRequestError(msg, field="reference")
            self.reference_training_set = name
        self.reference_days = (reference_start or ref_start, reference_end or ref_end)
        if current not in (None, "served", "history"):
            msg = f"current {current!r} is not understood: write served or history"
            raise BadRequestError(msg, field="current")
        # A training set holds features, like the served values (history holds fields).
        self.current_served = current == "served" or (
            current is None
            and self.reference_training_set is not None
            and current_start is None
            and current_end is None
        )
        self.current_days = (current_start or cur_start, current_end or cur_end)


def measure_drift(
    catalog: Catalog, offline: DeltaOfflineStore, fs: FeatureSet, request: DriftRequest
) -> dict[str, Any]:
    """The drift of ``request``'s current population from its reference, per column."""
    if request.reference_training_set is not None:
        reference: Population = population(
            catalog, offline, fs, training_set=request.reference_training_set
        )
    else:
        start, end = request.reference_days
        reference = population(catalog, offline, fs, start=start, end=end)
    start, end = request.current_days
    current = population(catalog, offline, fs, start=start, end=end, served=request.current_served)
    time_field = catalog.definitions(include_retired=True).source(fs.source).timestamp
    return drift_body(
        fs,
        reference.profiles,
        current.profiles,
        (reference.describe, current.describe),
        time_field=time_field,
    )


def _all_features(fs: FeatureSet) -> list[str]:
    return [f"{fs.name}@v{fs.version}:{f.name}" for f in fs.features]


def monitoring_router(
    catalog: Catalog, offline: DeltaOfflineStore, settings: Settings, authorize: Authorize
) -> APIRouter:
    router = APIRouter(tags=["monitoring"])

    def guarded(
        request: Request, name: str, version: int | None, *, values: bool = True
    ) -> FeatureSet:
        """The feature set, once the caller may read it: all its features for what shows
        values; for health (no values), its non-pii features."""
        fs = feature_set_at(catalog, name, version)
        defs = catalog.definitions(include_retired=True)
        refs = _all_features(fs)
        if not values:
            plain = [r for r, f in zip(refs, fs.features, strict=True) if not fs.is_pii(f)]
            refs = plain or refs
        authorize(request, resolve_features(defs, refs))
        return fs

    @router.get("/v1/stats/{feature_set}")
    def stats(
        request: Request,
        feature_set: str,
        version: int | None = None,
        start: str | None = None,
        end: str | None = None,
        training_set: str | None = None,
        served: bool = False,
    ) -> dict[str, Any]:
        fs = guarded(request, feature_set, version)
        pop = population(
            catalog, offline, fs, start=start, end=end, training_set=training_set, served=served
        )
        return stats_body(fs, pop)

    @router.get("/v1/drift/{feature_set}")
    def drift(
        request: Request,
        feature_set: str,
        asked: Annotated[DriftRequest, Depends()],
        version: int | None = None,
    ) -> dict[str, Any]:
        fs = guarded(request, feature_set, version)
        return measure_drift(catalog, offline, fs, asked)

    @router.get("/v1/monitor/{feature_set}")
    def monitor_one(request: Request, feature_set: str) -> dict[str, Any]:
        fs = guarded(request, feature_set, None, values=False)
        (health,) = all_health(catalog.definitions(), offline, settings, [fs.name])
        return health.body()

    @router.get("/v1/monitor")
    def monitor_all() -> dict[str, Any]:
        """Every active feature set's health."""
        began = time.monotonic()
        sets = [h.body() for h in all_health(catalog.definitions(), offline, settings)]
        return {"feature_sets": sets, "seconds": round(time.monotonic() - began, 3)}

    return router
