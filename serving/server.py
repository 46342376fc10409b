"""The API process: the app on uvicorn, with the collector settled first.

``headwater serve`` calls ``run_server``; the server's options live here, beside the app,
because they are the API's latency, not the CLI's.
"""

from __future__ import annotations

import gc

from headwater.schemas.settings import Settings

__all__ = ["run_server"]


def run_server(settings: Settings, *, host: str | None = None, port: int | None = None) -> None:
    """Serve the HTTP API until stopped; ``host``/``port`` override the settings."""
    import uvicorn

    from headwater.serving.app import create_app

    api = create_app(settings)
    # Lookups allocate many short-lived objects; without this, full collections that walk
    # every long-lived object (modules, plans) add tens of ms to the tail.
    gc.freeze()
    uvicorn.run(
        api,
        host=host or settings.serving.host,
        port=port or settings.serving.port,
        log_level="warning",
    )
