"""Guards against requests a browser can be tricked into sending.

- **Content types** (cross-site request forgery): a web page can make a visitor's browser POST
  ``text/plain``, ``application/x-www-form-urlencoded`` or ``multipart/form-data`` (or a body
  with no type at all) anywhere without asking, but nothing else. Requests with a body are
  therefore accepted only with the JSON types of their endpoint (415 otherwise), so no page
  can push events or register schemas through a browser on the same network.
- **Trusted hosts** (DNS rebinding): a page on ``evil.example`` that re-resolves its name to
  127.0.0.1 reaches a laptop's API with ``Host: evil.example``; only the names in
  ``security.trusted_hosts`` are answered (400 otherwise).

A plain ASGI middleware: it looks at headers only and costs a few dictionary lookups.
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from headwater.schemas.settings import Settings
from headwater.serving.auth import is_loopback

__all__ = ["LOOPBACK_NAMES", "RequestGuards", "request_problem", "trusted_hosts"]

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "testserver")
"""Host names answered by default on loopback (``testserver`` is Starlette's test client's,
never a resolvable public name)."""
_JSON = frozenset({"application/json"})
_REGISTRY = frozenset(
    {
        "application/json",
        "application/vnd.schemaregistry.v1+json",
        "application/vnd.schemaregistry+json",
        "application/octet-stream",  # what Confluent's own registry also accepts
    }
)
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def trusted_hosts(settings: Settings) -> frozenset[str] | None:
    """The host names the API answers to, ``None`` for any (see ``SecuritySettings``)."""
    configured = settings.security.trusted_hosts
    if configured is None:
        if not is_loopback(settings.serving.host):
            return None
        configured = LOOPBACK_NAMES
    names = frozenset(h.lower().strip("[]") for h in configured)
    return None if "*" in names else names


def _host_name(value: str) -> str:
    value = value.strip().lower()
    if value.startswith("["):  # [::1]:8000
        return value[1:].split("]", 1)[0]
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return ""


async def _reject(send: Send, status: int, detail: str, field: str) -> None:
    body = orjson.dumps({"detail": detail, "errors": [{"field": field, "reason": detail}]})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


def request_problem(scope: Scope, hosts: frozenset[str] | None) -> tuple[int, str, str] | None:
    """``(status, detail, field)`` when an HTTP request's host is not trusted (400) or its
    body has a type its endpoint does not take (415); ``None`` when it passes."""
    if hosts is not None:
        host = _host_name(_header(scope, b"host"))
        if host not in hosts:
            detail = (
                f"host {host!r} is not one this API answers to; add it to "
                "security.trusted_hosts (HEADWATER_SECURITY__TRUSTED_HOSTS) if it is yours"
            )
            return 400, detail, "header.host"
    if scope["method"] in _BODY_METHODS:
        media = _header(scope, b"content-type").split(";", 1)[0].strip().lower()
        allowed = _REGISTRY if scope["path"].startswith("/registry/") else _JSON
        if media not in allowed:
            detail = (
                f"content type {media or '(none)'!r} is not accepted here; send "
                f"{' or '.join(sorted(allowed))} (curl: -H 'Content-Type: application/json')"
            )
            return 415, detail, "header.content-type"
    return None


class RequestGuards:
    """Refuses untrusted ``Host`` headers (400) and bodies of other types (415)."""

    def __init__(self, app: ASGIApp, hosts: Iterable[str] | None) -> None:
        self.app = app
        self.hosts = frozenset(hosts) if hosts is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            problem = request_problem(scope, self.hosts)
            if problem is not None:
                await _reject(send, *problem)
                return
        await self.app(scope, receive, send)
