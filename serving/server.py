"""The API process: the app on uvicorn, with the collector settled first.

``headwater serve`` calls ``run_server``; the server's options live here, beside the app,
because they are the API's latency, not the CLI's. One Python process uses one core (the
GIL); ``--workers N`` runs N server processes on one port (uvicorn's supervisor), each with
its own app built from the environment by ``app_from_environment``. They share everything
that must be shared through the stores: keys and definitions (catalog), idempotency answers
(Redis), and each has its own transactional producer (a random ``transactional.id``).
"""

from __future__ import annotations

import gc
import logging
import os
from typing import TYPE_CHECKING, Any

from headwater.schemas.settings import Settings
from headwater.serving.auth import describe_key_policy

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger("headwater.serve")

__all__ = ["app_from_environment", "run_server"]


def app_from_environment() -> FastAPI:
    """The app of one server process of several (``serve --workers N``): its settings come
    from the environment and ``headwater.yaml``, with the address the parent bound."""
    from headwater.schemas.settings import load_settings
    from headwater.serving.app import create_app

    api = create_app(load_settings())
    gc.freeze()  # see run_server
    return api


def run_server(
    settings: Settings, *, host: str | None = None, port: int | None = None, workers: int = 1
) -> None:
    """Serve the HTTP API until stopped; ``host``/``port`` override the settings; ``workers``
    server processes share the port (one per core serves the most lookups)."""
    import uvicorn

    from headwater.serving.app import create_app

    # The app decides from serving.host whether keys are required and which Host names it
    # answers: it must see the address actually bound, not the one the settings name.
    serving = settings.serving.model_copy(
        update={"host": host or settings.serving.host, "port": port or settings.serving.port}
    )
    settings = settings.model_copy(update={"serving": serving})
    api = create_app(settings)  # with several workers: a check of the settings, then dropped
    log.warning(
        "serving on %s:%d with %d process(es); API keys %s",
        serving.host,
        serving.port,
        workers,
        describe_key_policy(settings),
    )
    options: dict[str, Any] = {
        "host": serving.host,
        "port": serving.port,
        "log_level": "warning",
        "server_header": False,  # answers name no server software (DESIGN §8: reveal nothing)
    }
    if workers > 1:
        del api
        os.environ["HEADWATER_SERVING__HOST"] = serving.host
        os.environ["HEADWATER_SERVING__PORT"] = str(serving.port)
        uvicorn.run(
            "headwater.serving.server:app_from_environment",
            factory=True,
            workers=workers,
            **options,
        )
        return
    # Lookups allocate many short-lived objects; without this, full collections that walk
    # every long-lived object (modules, plans) add tens of ms to the tail.
    gc.freeze()
    uvicorn.run(api, **options)
