"""``POST /v1/online-features``: one handler, reached by a lean ASGI path or by FastAPI.

A lookup of one entity is a Redis round trip and some microseconds of Python, so the web
stack around it decides its throughput: profiled under 16 clients (bench/online_latency.py
``--profile``), FastAPI's routing, dependency solving, pydantic body model and four
middleware layers took about 55% of a lookup's Python time. ``LeanLookups`` therefore sits
in front of the whole app and answers the lookups it can take plainly, doing the same
checks in one function:

- the request guards (trusted host, JSON content type: ``request_guards.request_problem``),
- the body limit (``serving.max_body_bytes``),
- the caller: no key needed, or a key the Guard verified before (``Guard.plain_reader``),
- a body of the documented shape (``features`` / ``feature_service`` / ``entities`` /
  ``request``, the fields request-time features read).

Every other request, and every lookup that fails one of these checks, goes to the full app
unchanged (the body it read is handed on), which answers and audits it exactly as before.
Errors raised after a request was taken (unknown features, grants, a Redis outage) are
answered by the app's one error mapping (``error_handlers``), and metrics count the lookup
under the same route label.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from headwater.connectors.online_redis_async import AsyncRedisReader
from headwater.schemas.definitions import Definitions
from headwater.schemas.errors import FeatureStoreError
from headwater.serving.auth import Guard, Principal
from headwater.serving.error_handlers import project_error_response, unexpected_response
from headwater.serving.features import FeatureResolver
from headwater.serving.limits import check_entity_count
from headwater.serving.metrics import observe
from headwater.serving.online import lookup_async
from headwater.serving.request_guards import request_problem
from headwater.serving.response_log import ResponseLog

__all__ = ["PATH", "LeanLookups", "OnlineLookups", "format_served_at"]

PATH = "/v1/online-features"
_TARGET = f"POST {PATH}"
_FIELDS = frozenset({"features", "feature_service", "entities", "request"})
_HEADERS = [(b"content-type", b"application/json")]

log = logging.getLogger(__name__)


def format_served_at(ms: int) -> str:
    """ISO-8601 UTC with milliseconds: ``2026-11-26T15:04:05.123Z``."""
    return (
        datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
    )


def _dumps(payload: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(payload)
    except TypeError:  # an integer sum beyond 64 bits
        return json.dumps(payload).encode()


class OnlineLookups:
    """Answers a lookup whose caller is known: the one handler of both paths."""

    def __init__(
        self,
        *,
        definitions: Callable[[], Awaitable[Definitions]],
        reader: AsyncRedisReader,
        guard: Guard,
        max_entities: int,
        response_log: ResponseLog | None,
    ) -> None:
        self._definitions = definitions
        self._reader = reader
        self._guard = guard
        self._max_entities = max_entities
        self._response_log = response_log
        self._resolver = FeatureResolver()

    async def answer(
        self,
        principal: Principal | None,
        features: list[str] | None,
        feature_service: str | None,
        entities: Mapping[str, Sequence[Any]],
        request: Mapping[str, Any] | None = None,
    ) -> bytes:
        """The JSON body of the answer.

        Runs on the event loop, not a thread: a lookup is one pipelined Redis round trip plus
        microseconds of Python, and thread hand-offs under load cost more than that. The
        round trip is awaited (redis.asyncio, bounded by serving.redis_*_timeout_seconds), so
        a stalled Redis holds only the lookups, answered 503, never the loop.

        Raises:
            FeatureStoreError: the request names unknown features or entity columns, asks for
                features the caller's key has no grant for, or Redis failed.
        """
        check_entity_count(entities, self._max_entities)
        resolved = self._resolver(await self._definitions(), features, feature_service)
        self._guard.authorize_features(principal, resolved, _TARGET)
        result = await lookup_async(self._reader.read_many, resolved, entities, request)
        statuses = [[s.value for s in row] for row in result.statuses]
        if self._response_log is not None:
            self._response_log.record(
                result.served_at_ms, resolved.pinned_refs, result.entities, result.values, statuses
            )
        return _dumps(
            {
                "served_at": format_served_at(result.served_at_ms),
                "features": list(resolved.refs),
                "results": [
                    {"entity": entity, "values": values, "statuses": row}
                    for entity, values, row in zip(
                        result.entities, result.values, statuses, strict=True
                    )
                ],
            }
        )


def _plain_body(
    body: bytes,
) -> tuple[list[str] | None, str | None, dict[str, list[Any]], dict[str, Any] | None] | None:
    """``(features, feature_service, entities, request)`` of a body of exactly the
    documented shape, else ``None`` (the full app then names what is wrong)."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(parsed, dict) or not parsed.keys() <= _FIELDS:
        return None
    features = parsed.get("features")
    service = parsed.get("feature_service")
    entities = parsed.get("entities")
    if not isinstance(entities, dict) or not all(
        isinstance(k, str) and isinstance(v, list) for k, v in entities.items()
    ):
        return None
    if features is not None and not (
        isinstance(features, list) and all(isinstance(f, str) for f in features)
    ):
        return None
    if service is not None and not isinstance(service, str):
        return None
    request = parsed.get("request")
    if request is not None and not (
        isinstance(request, dict) and all(isinstance(k, str) for k in request)
    ):
        return None
    return features, service, entities, request


class LeanLookups:
    """The ASGI app in front of the API that answers plain lookups itself (module doc)."""

    def __init__(
        self,
        app: ASGIApp,
        lookups: OnlineLookups,
        guard: Guard,
        *,
        hosts: frozenset[str] | None,
        max_body_bytes: int,
        retry_after_s: int,
    ) -> None:
        self.app = app
        self._lookups = lookups
        self._guard = guard
        self._hosts = hosts
        self._max_body = max_body_bytes
        self._retry_after_s = retry_after_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] != PATH
            or scope["method"] != "POST"
            or request_problem(scope, self._hosts) is not None
        ):
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        body, messages = await self._body(receive)
        request = None if body is None else _plain_body(body)
        client = scope.get("client")
        principal = (
            None
            if request is None
            else await self._guard.plain_reader(
                Headers(scope=scope), client[0] if client else "unknown"
            )
        )
        if request is None or principal is None:
            await self.app(scope, _replay(messages, receive), send)
            return
        try:
            answer = await self._lookups.answer(principal, *request)
        except FeatureStoreError as exc:
            response = project_error_response(exc, _TARGET, self._retry_after_s)
        except Exception as exc:  # the app's last-resort answer; the log keeps the cause
            log.exception("%s answered 500", _TARGET)
            response = unexpected_response(exc)
        else:
            headers = [*_HEADERS, (b"content-length", str(len(answer)).encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": answer})
            observe(PATH, 200, time.perf_counter() - start)
            return
        await response(scope, receive, send)
        observe(PATH, response.status_code, time.perf_counter() - start)

    async def _body(self, receive: Receive) -> tuple[bytes | None, list[Message]]:
        """The whole body (``None`` when over the limit) and the messages read, for replay."""
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                return None, messages
            size += len(message.get("body", b""))
            if size > self._max_body:
                return None, messages
            if not message.get("more_body", False):
                break
        if len(messages) == 1:
            return messages[0].get("body", b""), messages
        return b"".join(m.get("body", b"") for m in messages), messages


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """``receive`` that first hands on the messages already read."""
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed
