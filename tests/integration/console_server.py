"""The API as ``headwater serve`` builds it (``create_app`` on uvicorn), for the console's browser
tests: ``python -m tests.integration.console_server PORT`` with the deployment's ``HEADWATER_*``
environment.
"""

from __future__ import annotations

import sys

import uvicorn
from fastapi import FastAPI

from headwater.schemas.settings import load_settings
from headwater.serving.app import create_app

__all__ = ["build_app"]


def build_app(port: int) -> FastAPI:
    """The app for ``127.0.0.1:port`` from the environment's settings, as ``run_server``
    builds it (the app decides from the bound host whether keys are required)."""
    settings = load_settings()
    serving = settings.serving.model_copy(update={"host": "127.0.0.1", "port": port})
    return create_app(settings.model_copy(update={"serving": serving}))


def main() -> None:
    port = int(sys.argv[1])
    uvicorn.run(build_app(port), host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()
