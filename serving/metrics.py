"""Prometheus metrics of the HTTP API, served at ``/metrics``."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from headwater.schemas.offline_location import OfflineLocation
from headwater.serving.monitor_records import Measure, latest_measures

__all__ = ["MEASURE_METRICS", "instrument", "observe", "watch_measures"]

log = logging.getLogger(__name__)

REQUESTS = Counter("headwater_http_requests_total", "HTTP requests", ["route", "status"])
LATENCY = Histogram(
    "headwater_http_request_seconds",
    "HTTP request latency",
    ["route"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
)


class _Measure:
    """Counts and times requests by route template (bounded label values).

    A plain ASGI middleware: FastAPI's ``@app.middleware("http")`` wraps every request in
    extra tasks and streams, which halved the small-request throughput of the push endpoint.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status: list[int] = [500]

        async def send_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route: Any = scope.get("route")
            observe(getattr(route, "path", "unmatched"), status[0], time.perf_counter() - start)


def observe(route: str, status: int, seconds: float) -> None:
    """Count and time one request of ``route`` (its template, a bounded label value)."""
    LATENCY.labels(route).observe(seconds)
    REQUESTS.labels(route, str(status)).inc()


def instrument(app: FastAPI) -> None:
    """Add request metrics and serve the Prometheus exposition at ``/metrics``.

    An ordinary route (not prometheus_client's ASGI app mounted beside the API), so the
    API's key check applies to it like to every endpoint: scrape it with a read key
    (Prometheus: ``authorization: {credentials: <key>}``).
    """
    app.add_middleware(_Measure)

    @app.get("/metrics", include_in_schema=False)
    @app.get("/metrics/", include_in_schema=False)  # what some scrape configs name
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


MEASURE_METRICS = {
    "psi": (
        "headwater_feature_drift_psi",
        (
            "Population stability index of a field or feature "
            "against its reference, as last measured by `headwater drift` or `monitor`"
        ),
    ),
    "js": (
        "headwater_feature_drift_js",
        (
            "Jensen-Shannon divergence (bits) of a field or "
            "feature against its reference, as last measured"
        ),
    ),
    "mismatch_rate": (
        "headwater_consistency_mismatch_rate",
        (
            "Share of logged online values "
            "that offline recomputation did not reproduce, as last measured by "
            "`headwater consistency`"
        ),
    ),
}
_LIMIT_METRIC = (
    "headwater_monitor_limit",
    "The limit a measure is checked against (definition's monitoring:)",
)
_MAX_AGE_MS = 7 * 24 * 3600 * 1000
_CACHE_S = 30.0


class _Measures(Collector):
    """The newest recorded measures (``serving.monitor_records``) as gauges, read from the
    offline location at most every 30 s; measures older than a week are not exported."""

    def __init__(self) -> None:
        self.location: OfflineLocation | None = None
        self._lock = threading.Lock()
        self._cached: tuple[float, list[Measure]] = (0.0, [])

    def _measures(self) -> list[Measure]:
        with self._lock:
            at, measures = self._cached
            if self.location is None or time.monotonic() - at < _CACHE_S and at:
                return measures
            try:
                measures = latest_measures(self.location, max_age_ms=_MAX_AGE_MS)
            except Exception as exc:  # noqa: BLE001 - a scrape never fails on the offline store
                log.warning("monitoring measures not read: %s", exc)
            self._cached = (time.monotonic(), measures)
            return measures

    def collect(self) -> Iterator[GaugeMetricFamily]:
        families = {
            kind: GaugeMetricFamily(name, text, labels=["feature_set", "column"])
            for kind, (name, text) in MEASURE_METRICS.items()
        }
        limits = GaugeMetricFamily(*_LIMIT_METRIC, labels=["feature_set", "column", "measure"])
        for m in self._measures():
            family = families.get(m.measure)
            if family is None:
                continue
            family.add_metric([m.feature_set, m.column], m.value)
            if m.limit is not None:
                limits.add_metric([m.feature_set, m.column, m.measure], m.limit)
        yield from families.values()
        yield limits


_COLLECTOR = _Measures()
REGISTRY.register(_COLLECTOR)


def watch_measures(location: OfflineLocation) -> None:
    """Export the measures recorded under ``location`` (the app's offline location)."""
    _COLLECTOR.location = location
    _COLLECTOR._cached = (0.0, [])
