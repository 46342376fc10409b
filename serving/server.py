"""The API process: the app on uvicorn, with the collector settled first.

``headwater serve`` calls ``run_server``; the server's options live here, beside the app,
because they are the API's latency, not the CLI's. One Python process uses one core (the
GIL); ``serve --workers N`` runs N server processes, each with its own socket on the same
port (``SO_REUSEPORT``: the kernel spreads connections evenly over the sockets; one shared
listening socket left most keep-alive connections with whichever process woke first). They
share what must be shared through the stores: keys and definitions (catalog), idempotency
answers (Redis); each has its own transactional producer (a random ``transactional.id``).
"""

from __future__ import annotations

import gc
import logging
import os
import socket

from headwater.schemas.settings import Settings
from headwater.serving.auth import describe_key_policy

log = logging.getLogger("headwater.serve")

__all__ = ["run_server"]


def _reuse_port_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` that other server processes may bind too."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    return sock


def run_server(
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    reuse_port: bool = False,
    processes: int = 1,
) -> None:
    """Serve the HTTP API until stopped; ``host``/``port`` override the settings.

    ``reuse_port``: bind with ``SO_REUSEPORT``, as one of ``processes`` server processes
    started by ``serve --workers`` (the count only goes into the start-up line).
    """
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
        "serving on %s:%d (pid %d, one of %d process(es)); API keys %s",
        serving.host,
        serving.port,
        os.getpid(),
        processes,
        describe_key_policy(settings),
    )
    config = uvicorn.Config(
        api,
        host=serving.host,
        port=serving.port,
        log_level="warning",
        server_header=False,  # answers name no server software (DESIGN §8: reveal nothing)
    )
    # Lookups allocate many short-lived objects next to a large cache of decoded entity
    # states. Full collections walk that cache: with the default thresholds, under 1,000
    # events/s of writes (the cache churning), one ran about every second and took 150-380
    # ms, collecting nothing (bench/online_latency.py, gc.callbacks). The worker's setting
    # makes them rare (every ~250M allocations); young collections keep cycles collected.
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    server = uvicorn.Server(config)
    if reuse_port:
        server.run(sockets=[_reuse_port_socket(serving.host, serving.port)])
    else:
        server.run()
