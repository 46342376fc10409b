"""Which lookups the lean ASGI path answers itself, and that it hands every other request to
the full app with its body intact (``serving.lookup_route``).

The inner app here is a recorder standing for FastAPI; the lookups and the Guard are small
stand-ins with the two methods the lean path calls. The full app's answers are tested end to
end in tests/integration/test_lean_lookups.py.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import orjson
import pytest
from starlette.types import Message, Receive, Scope, Send

from headwater.serving.auth import Guard, Principal
from headwater.serving.errors import NotFoundError
from headwater.serving.lookup_route import PATH, LeanLookups, OnlineLookups

BODY = orjson.dumps({"features": ["s:f"], "entities": {"user_id": ["u1"]}})


class Inner:
    """The full app: records what reached it and the body it could read."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        self.bodies.append(body)
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b"full app"})


class Lookups:
    def __init__(self, error: Exception | None = None) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.error = error

    async def answer(self, principal: Principal | None, *request: Any) -> bytes:
        self.calls.append((principal, *request))
        if self.error is not None:
            raise self.error
        return b'{"answer": 1}'


class Reader:
    def __init__(self, principal: Principal | None) -> None:
        self.principal = principal

    async def plain_reader(self, headers: Any, client: str) -> Principal | None:
        return self.principal


def run(
    lean: LeanLookups,
    *,
    body: bytes = BODY,
    chunks: int = 1,
    method: str = "POST",
    path: str = PATH,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> tuple[int, bytes, dict[bytes, bytes]]:
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "headers": headers
        if headers is not None
        else [(b"host", b"127.0.0.1:8000"), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 5000),
    }
    step = max(1, -(-len(body) // chunks))
    parts = [body[i : i + step] for i in range(0, len(body), step)] or [b""]
    messages = [
        {"type": "http.request", "body": p, "more_body": i < len(parts) - 1}
        for i, p in enumerate(parts)
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(lean(scope, receive, send))
    start = sent[0]
    return (
        start["status"],
        b"".join(m.get("body", b"") for m in sent[1:]),
        dict(start["headers"]),
    )


def lean_path(
    *, principal: Principal | None = None, error: Exception | None = None, limit: int = 1000
) -> tuple[LeanLookups, Inner, Lookups]:
    inner, lookups = Inner(), Lookups(error)
    lean = LeanLookups(
        inner,
        cast("OnlineLookups", lookups),
        cast("Guard", Reader(principal or Principal("anonymous@127.0.0.1"))),
        hosts=frozenset({"127.0.0.1"}),
        max_body_bytes=limit,
        retry_after_s=1,
    )
    return lean, inner, lookups


def test_a_plain_lookup_is_answered_without_the_full_app() -> None:
    lean, inner, lookups = lean_path()
    status, body, headers = run(lean, chunks=3)  # a body in several messages is joined
    assert (status, body) == (200, b'{"answer": 1}')
    assert headers[b"content-length"] == b"13"
    assert headers[b"content-type"] == b"application/json"
    assert inner.bodies == []
    principal = Principal("anonymous@127.0.0.1")
    assert lookups.calls == [(principal, ["s:f"], None, {"user_id": ["u1"]}, None)]


def test_a_lookup_with_request_fields_is_answered_by_the_lean_path() -> None:
    lean, inner, lookups = lean_path()
    body = b'{"features": ["s:r"], "entities": {"user_id": ["u1"]}, "request": {"amount": [2.5]}}'
    status, answer, _ = run(lean, body=body)
    assert (status, answer, inner.bodies) == (200, b'{"answer": 1}', [])
    principal = Principal("anonymous@127.0.0.1")
    assert lookups.calls == [(principal, ["s:r"], None, {"user_id": ["u1"]}, {"amount": [2.5]})]


@pytest.mark.parametrize(
    ("why", "kwargs"),
    [
        ("another path", {"path": "/v1/online-featuresx"}),
        ("another method", {"method": "PUT"}),
        (
            "untrusted host",
            {"headers": [(b"host", b"evil.example"), (b"content-type", b"application/json")]},
        ),
        (
            "not JSON's content type",
            {"headers": [(b"host", b"127.0.0.1"), (b"content-type", b"text/plain")]},
        ),
        ("over the body limit", {"body": b'{"entities": {"user_id": ["' + b"u" * 2000 + b'"]}}'}),
        ("not JSON", {"body": b"{nope", "chunks": 2}),
        ("an unknown field", {"body": b'{"entities": {"user_id": ["u1"]}, "extra": 1}'}),
        ("entities not columns", {"body": b'{"entities": {"user_id": "u1"}}'}),
        ("entities missing", {"body": b'{"features": ["s:f"]}'}),
        ("a feature not text", {"body": b'{"features": [1], "entities": {"u": [1]}}'}),
        ("a service not text", {"body": b'{"feature_service": 1, "entities": {"u": [1]}}'}),
        ("a list body", {"body": b"[1, 2]"}),
        ("request not a mapping", {"body": b'{"entities": {"u": [1]}, "request": [1]}'}),
    ],
)
def test_anything_else_goes_to_the_full_app_with_its_body(why: str, kwargs: dict[str, Any]) -> None:
    lean, inner, lookups = lean_path()
    status, body, _ = run(lean, **kwargs)
    assert (status, body) == (299, b"full app"), why
    assert inner.bodies == [kwargs.get("body", BODY)], why
    assert lookups.calls == [], why


def test_a_caller_the_guard_cannot_accept_plainly_goes_to_the_full_app() -> None:
    inner, lookups = Inner(), Lookups()
    lean = LeanLookups(
        inner,
        cast("OnlineLookups", lookups),
        cast("Guard", Reader(None)),
        hosts=None,
        max_body_bytes=1000,
        retry_after_s=1,
    )
    assert run(lean)[:2] == (299, b"full app")
    assert inner.bodies == [BODY] and lookups.calls == []


def test_errors_after_a_lookup_was_taken_get_the_apis_error_body() -> None:
    lean, inner, _ = lean_path(error=NotFoundError("unknown feature 's:f'", field="features[0]"))
    status, body, _ = run(lean)
    assert status == 404
    assert orjson.loads(body) == {
        "detail": "unknown feature 's:f'",
        "errors": [{"field": "features[0]", "reason": "unknown feature 's:f'"}],
    }
    assert inner.bodies == []


def test_an_unexpected_exception_is_a_500_without_its_text() -> None:
    lean, _, _ = lean_path(error=RuntimeError("secret detail"))
    status, body, _ = run(lean)
    assert status == 500
    assert b"secret" not in body
    assert orjson.loads(body)["detail"] == "internal error (RuntimeError); see the server's log"
