"""The API process: the app on uvicorn, with the collector settled first.

``headwater serve`` calls ``run_server``; the server's options live here, beside the app,
because they are the API's latency, not the CLI's.
"""

from __future__ import annotations

import gc
import logging

from headwater.schemas.settings import Settings
from headwater.serving.auth import describe_key_policy

log = logging.getLogger("headwater.serve")

__all__ = ["run_server"]


def run_server(settings: Settings, *, host: str | None = None, port: int | None = None) -> None:
    """Serve the HTTP API until stopped; ``host``/``port`` override the settings."""
    import uvicorn

    from headwater.serving.app import create_app

    # The app decides from serving.host whether keys are required and which Host names it
    # answers: it must see the address actually bound, not the one the settings name.
    serving = settings.serving.model_copy(
        update={"host": host or settings.serving.host, "port": port or settings.serving.port}
    )
    settings = settings.model_copy(update={"serving": serving})
    api = create_app(settings)
    log.warning(
        "serving on %s:%d; API keys %s",
        serving.host,
        serving.port,
        describe_key_policy(settings),
    )
    # Lookups allocate many short-lived objects; without this, full collections that walk
    # every long-lived object (modules, plans) add tens of ms to the tail.
    gc.freeze()
    uvicorn.run(
        api,
        host=serving.host,
        port=serving.port,
        log_level="warning",
        server_header=False,  # answers name no server software (DESIGN §8: reveal nothing)
    )
