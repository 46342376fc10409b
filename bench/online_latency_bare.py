"""The baseline of `bench/online_latency.py`: a bare FastAPI endpoint reading Redis.

    .venv/bin/python bench/online_latency_bare.py PORT REDIS_URL KEY_PREFIXES {sync,async}

It takes the same request body as `headwater serve`'s lookup; for 1 entity it does one Redis
HGETALL (the entity's hash of the first feature set), for more one pipelined round trip
reading the same hashes Headwater reads (every feature set's: ``KEY_PREFIXES``,
comma-separated). ``sync`` uses redis-py (+ hiredis) from a sync endpoint, like Headwater's;
``async`` redis.asyncio from an async endpoint. Its own module because the benchmark runs it
as a separate process, next to the Headwater server, with nothing of Headwater imported.
"""

from __future__ import annotations

import argparse
import subprocess
import time
from typing import Any

import httpx
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

__all__ = ["bare_server", "wait_bare"]


def bare_server(port: int, redis_url: str, key_prefixes: str, style: str) -> None:
    """The baseline: the same request body; one HGETALL for one entity, else one pipeline of
    every entity's hash in every feature set (``key_prefixes``, comma-separated)."""
    prefixes = key_prefixes.split(",")
    key_prefix = prefixes[0]
    import redis
    import uvicorn

    app = FastAPI()

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    if style == "sync":
        client = redis.Redis.from_url(redis_url)

        @app.post("/v1/online-features")
        def lookup(body: dict[str, Any]) -> dict[str, int]:
            users = body["entities"]["user_id"]
            if len(users) == 1:
                raws = [client.hgetall(f"{key_prefix}{{{users[0]}}}")]
            else:
                pipe = client.pipeline(transaction=False)
                for prefix in prefixes:
                    for user in users:
                        pipe.hgetall(f"{prefix}{{{user}}}")
                raws = pipe.execute()
            return {"entities": len(raws), "fields": sum(len(r) for r in raws)}
    else:
        import redis.asyncio as aredis

        aclient = aredis.Redis.from_url(redis_url)

        @app.post("/v1/online-features")
        async def lookup_async(request: Request) -> Response:
            users = orjson.loads(await request.body())["entities"]["user_id"]
            if len(users) == 1:
                raws = [await aclient.hgetall(f"{key_prefix}{{{users[0]}}}")]
            else:
                pipe = aclient.pipeline(transaction=False)
                for prefix in prefixes:
                    for user in users:
                        pipe.hgetall(f"{prefix}{{{user}}}")
                raws = await pipe.execute()
            return Response(
                orjson.dumps({"entities": len(raws), "fields": sum(len(r) for r in raws)}),
                media_type="application/json",
            )

    # The options `headwater serve` passes (serving/server.py).
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def wait_bare(
    url: str, proc: subprocess.Popen[bytes], timeout_s: float = 60, path: str = "/healthz"
) -> None:
    """Wait until the server ``proc`` at ``url`` answers its health check at ``path``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            msg = f"server at {url} exited with {proc.returncode}"
            raise RuntimeError(msg)
        try:
            if httpx.get(f"{url}{path}", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    msg = f"server at {url} did not answer within {timeout_s:g} s"
    raise TimeoutError(msg)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("port", type=int)
    parser.add_argument("redis_url")
    parser.add_argument("key_prefixes")
    parser.add_argument("style", choices=("sync", "async"))
    args = parser.parse_args()
    bare_server(args.port, args.redis_url, args.key_prefixes, args.style)
