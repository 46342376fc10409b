"""Limits every request of the API is held to, whatever its endpoint.

- ``BodyLimit``: an ASGI middleware refusing (413) a POST/PUT/PATCH body over its limit,
  before the endpoint parses it: from ``Content-Length`` at once, or while the body streams
  in (chunked uploads name no length). Push has a larger limit of its own.
- ``check_entity_count``: the entities of one online lookup.
- ``event_time_problem``: event and label times must lie in 1970..2200; an integer such as
  ``-2**63`` is a valid Avro long but no time anyone means, and dates far outside it break
  date arithmetic downstream.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from headwater.serving.errors import PayloadTooLargeError

__all__ = [
    "EVENT_TIME_MAX_MS",
    "EVENT_TIME_MIN_MS",
    "BodyLimit",
    "check_entity_count",
    "event_time_problem",
]

EVENT_TIME_MIN_MS = 0
"""1970-01-01T00:00:00Z."""
EVENT_TIME_MAX_MS = 7_258_118_400_000
"""2200-01-01T00:00:00Z."""

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def event_time_problem(ms: int) -> str | None:
    """Why ``ms`` is refused as an event or label time, or ``None`` when it is in range."""
    if EVENT_TIME_MIN_MS <= ms < EVENT_TIME_MAX_MS:
        return None
    return (
        f"time {ms} (epoch ms) is outside 1970-01-01..2200-01-01 "
        f"({EVENT_TIME_MIN_MS}..{EVENT_TIME_MAX_MS - 1}); give epoch milliseconds or ISO-8601"
    )


def _too_large(limit: int, size: int | None) -> str:
    got = f"of {size} bytes " if size is not None else ""
    return f"request body {got}is over the limit of {limit} bytes; send less per request"


class BodyLimit:
    """Refuse request bodies larger than ``limit_of(path)`` bytes with 413.

    The answer has the API's error shape (``{"detail", "errors"}``). A body that turns out
    too large while the endpoint reads it raises ``HTTPException(413)`` from ``receive``,
    which the app's error handler answers the same way.
    """

    def __init__(self, app: ASGIApp, limit_of: Callable[[str], int]) -> None:
        self.app = app
        self.limit_of = limit_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        limit = self.limit_of(scope["path"])
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await _refuse(send, _too_large(limit, int(value)))
                return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise HTTPException(413, _too_large(limit, None))
            return message

        await self.app(scope, limited, send)


async def _refuse(send: Send, detail: str) -> None:
    body = orjson.dumps({"detail": detail, "errors": [{"field": "body", "reason": detail}]})
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def check_entity_count(entities: Mapping[str, Sequence[Any]], limit: int) -> None:
    """Refuse (413) an online lookup of more than ``limit`` entities
    (``serving.online_max_entities``): a lookup's cost and answer grow with it."""
    rows = max((len(v) for v in entities.values()), default=0)
    if rows > limit:
        msg = (
            f"{rows} entities is over the limit of {limit} per lookup "
            "(serving.online_max_entities); split the request"
        )
        raise PayloadTooLargeError(msg, field="entities")
