"""The API as ``headwater serve`` builds it (``create_app`` on uvicorn), for the console's browser
tests, optionally with three fixed-JSON routes put in front of the app's own.

``python -m tests.integration.console_server PORT [FIXTURES_DIR]`` with the deployment's
``HEADWATER_*`` environment. With ``FIXTURES_DIR``, ``GET /v1/stats/{feature_set}``,
``/v1/drift/{feature_set}`` and ``/v1/monitor/{feature_set}`` answer the files ``stats.json``,
``drift.json`` and ``monitor.json`` there, behind the same API-key guard as every route, and
each request (path and query) is appended to ``requests.jsonl`` so a test can check what the
console asked for. TEST ONLY: those three endpoints are being written on the main branch (the
statistics, drift and monitor backend) and are tested there; these stand-ins answer exactly
their JSON contract so the console's rendering of it can be tested here.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request

from headwater.schemas.settings import load_settings
from headwater.serving.app import create_app

__all__ = ["FIXTURE_ENDPOINTS", "build_app"]

FIXTURE_ENDPOINTS = {"stats": "stats.json", "drift": "drift.json", "monitor": "monitor.json"}


def _add_fixtures(app: FastAPI, fixtures: Path) -> None:
    before = len(app.router.routes)

    def answer(kind: str, request: Request) -> Any:
        with (fixtures / "requests.jsonl").open("a") as log:
            log.write(json.dumps({"path": request.url.path, "query": dict(request.query_params)}))
            log.write("\n")
        return json.loads((fixtures / FIXTURE_ENDPOINTS[kind]).read_text())

    @app.get("/v1/stats/{feature_set}")
    def stats(feature_set: str, request: Request) -> Any:
        return answer("stats", request)

    @app.get("/v1/drift/{feature_set}")
    def drift(feature_set: str, request: Request) -> Any:
        return answer("drift", request)

    @app.get("/v1/monitor/{feature_set}")
    def monitor(feature_set: str, request: Request) -> Any:
        return answer("monitor", request)

    # First in line: once the real endpoints are merged in, these still answer the fixed JSON.
    routes = app.router.routes
    added = routes[before:]
    del routes[before:]
    routes[0:0] = added


def build_app(port: int, fixtures: Path | None) -> FastAPI:
    """The app for ``127.0.0.1:port`` from the environment's settings, as ``run_server``
    builds it (the app decides from the bound host whether keys are required)."""
    settings = load_settings()
    serving = settings.serving.model_copy(update={"host": "127.0.0.1", "port": port})
    app = create_app(settings.model_copy(update={"serving": serving}))
    if fixtures is not None:
        _add_fixtures(app, fixtures)
    return app


def main() -> None:
    port = int(sys.argv[1])
    fixtures = Path(sys.argv[2]) if len(sys.argv) > 2 else None
    uvicorn.run(build_app(port, fixtures), host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()
