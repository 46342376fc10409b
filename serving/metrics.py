"""Prometheus metrics of the HTTP API, served at ``/metrics``."""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["instrument", "observe"]

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
