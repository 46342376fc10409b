"""A load generator for the HTTP benchmarks: keep-alive HTTP/1.1 connections from a raw
asyncio client (on uvloop when present), each sending its next request once the last one is
answered, for a fixed time; latency percentiles and requests per second.

Raw bytes on asyncio streams rather than an HTTP client library: it costs far less CPU than
either server measured, so on a machine shared with them the client is not what is measured.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["load", "request_bytes", "run_loop"]

T = TypeVar("T")


def request_bytes(port: int, path: str, body: bytes) -> bytes:
    """A JSON POST of ``body`` to ``path`` on 127.0.0.1:``port``, as sent on the wire."""
    head = (
        f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, bytes]:
    """One HTTP/1.1 keep-alive request; the servers always answer with a content-length."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    at = lower.find(b"content-length:")
    if at < 0:
        msg = f"response without content-length: {head[:300]!r}"
        raise RuntimeError(msg)
    length = int(lower[at + 15 : lower.find(b"\r\n", at)])
    return status, await reader.readexactly(length)


async def load(
    port: int, requests: list[bytes], clients: int, seconds: float, warmup: float
) -> dict[str, float]:
    """``clients`` keep-alive connections send ``requests`` round-robin, each waiting for its
    answer; ``warmup`` seconds first (not counted), then ``seconds`` measured."""
    conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(clients)]
    latencies: list[float] = []
    failures = 0
    reconnects = 0

    async def run(worker: int, deadline: float, record: bool) -> None:
        nonlocal failures, reconnects
        reader, writer = conns[worker]
        i = worker
        clock = time.perf_counter
        while clock() < deadline:
            t0 = clock()
            try:
                status, body = await _exchange(reader, writer, requests[i % len(requests)])
            except (asyncio.IncompleteReadError, ConnectionError):
                # The server closed the keep-alive connection (Feast's gunicorn recycles its
                # worker every 1,000 requests by default): a client opens a new one and
                # sends the request again, and the time that takes counts.
                writer.close()
                reader, writer = conns[worker] = await asyncio.open_connection("127.0.0.1", port)
                reconnects += 1
                status, body = await _exchange(reader, writer, requests[i % len(requests)])
            if record:
                latencies.append(clock() - t0)
                if status != 200:
                    failures += 1
                    if failures <= 3:
                        print(f"unexpected {status}: {body[:300]!r}", file=sys.stderr)
            i += clients

    await asyncio.gather(*(run(w, time.perf_counter() + warmup, False) for w in range(clients)))
    start = time.perf_counter()
    await asyncio.gather(*(run(w, start + seconds, True) for w in range(clients)))
    elapsed = time.perf_counter() - start
    for _, writer in conns:
        writer.close()
    if reconnects:
        print(f"{reconnects} connections closed by the server were reopened", file=sys.stderr)
    latencies.sort()
    n = len(latencies)
    return {
        "requests_s": (n - failures) / elapsed,
        "p50_ms": latencies[n // 2] * 1000,
        "p95_ms": latencies[int(n * 0.95)] * 1000,
        "p99_ms": latencies[int(n * 0.99)] * 1000,
        "requests": n,
        "failures": failures,
    }


# Called without arguments; ``...`` admits the lambdas that bind loop variables as defaults.
def run_loop(coro_fn: Callable[..., Coroutine[Any, Any, T]]) -> T:
    try:
        import uvloop

        factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop comes with faust
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro_fn())
