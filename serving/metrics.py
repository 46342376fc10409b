"""Prometheus metrics of the HTTP API, served at ``/metrics``."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from prometheus_client import Counter, Histogram, make_asgi_app

__all__ = ["instrument"]

REQUESTS = Counter("headwater_http_requests_total", "HTTP requests", ["route", "status"])
LATENCY = Histogram(
    "headwater_http_request_seconds",
    "HTTP request latency",
    ["route"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
)


def instrument(app: FastAPI) -> None:
    """Count and time every request by route template (not raw path: bounded label values)."""

    @app.middleware("http")
    async def _measure(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        start = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        LATENCY.labels(path).observe(time.perf_counter() - start)
        REQUESTS.labels(path, str(response.status_code)).inc()
        return response

    app.mount("/metrics", make_asgi_app())
