"""Who is calling and what they may do: API keys on every endpoint but the health checks.

One app-wide dependency (``Guard``) runs before every endpoint. It finds the scope the route
needs (``required_scope``: one table for the whole API), reads the caller's key from
``Authorization: Bearer``, ``X-API-Key`` or HTTP basic auth (the form confluent-kafka's
``SchemaRegistryClient`` sends: any user name, the key as password), checks scope and the
grants the path names (the source of a push or of a schema subject), and leaves the caller on
``request.state.principal`` for the grants that depend on the body (``authorize_features``:
feature sets and ``pii`` features). Every refusal is audited.

Keys are required whenever the API listens beyond loopback; on loopback from the first key
on, unless ``security.require_keys`` says otherwise (``SecuritySettings``). Verified keys are
remembered for ``security.key_cache_seconds``, so a lookup costs no database query; checks
that do query run in a worker thread, never on the event loop.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from headwater.connectors.catalog import (
    ApiKey,
    Catalog,
    CatalogError,
    Grants,
    Scope,
    acting_as,
    load_server_secret,
)
from headwater.connectors.catalog.audit import set_actor
from headwater.connectors.catalog.keys import ANY
from headwater.schemas.definitions import Definitions, Feature, FeatureSet
from headwater.schemas.errors import ConfigError
from headwater.schemas.settings import Settings
from headwater.serving.errors import ErrorItem, ServingError
from headwater.serving.features import ResolvedFeatures

__all__ = [
    "ForbiddenError",
    "Guard",
    "Principal",
    "UnauthorizedError",
    "authorize_features",
    "describe_key_policy",
    "is_loopback",
    "required_scope",
]

log = logging.getLogger(__name__)

OPEN_PATHS = frozenset(
    {
        "/healthz",
        "/readyz",
        "/docs",
        "/docs/oauth2-redirect",
        "/redoc",
        "/openapi.json",
        "/ui",
        "/ui/",
        "/ui/{asset}",
    }
)
"""Paths anyone may call: health checks (which reveal nothing), the API's description and
the web console's static files (``serving.console_api``: no data; each of its data calls
needs a key like any other)."""

_ADMIN_ROUTES = frozenset(
    {
        ("GET", "/v1/audit"),
        ("PUT", "/registry/config"),
        ("PUT", "/registry/config/{subject}"),
        ("DELETE", "/registry/subjects/{subject}"),
    }
)
_WRITE_ROUTES = frozenset(
    {("POST", "/v1/push/{source}"), ("POST", "/registry/subjects/{subject}/versions")}
)
_READ_POSTS = frozenset(
    {
        "/v1/online-features",
        "/v1/historical-features",
        "/registry/subjects/{subject}",
        "/registry/compatibility/subjects/{subject}/versions/{version}",
        "/registry/compatibility/subjects/{subject}/versions",
    }
)
_LOOK_EVERY_S = 0.05
"""How often (at most) the guard looks whether the catalog changed: keys made or revoked
count within this (a command that makes one takes far longer), at no cost under load."""
_HOW = "send it as `Authorization: Bearer <key>` or `X-API-Key: <key>`"


def required_scope(method: str, path: str) -> Scope | None:
    """The scope a route (its path template) needs; ``None`` for open ones.

    Reads are ``read``; pushing events and registering schemas ``write``; changing registry
    settings, deleting and the audit ``admin``; any route this table does not name needs
    ``admin``, so a new endpoint is closed until someone decides otherwise.
    """
    if path in OPEN_PATHS:
        return None
    if (method, path) in _ADMIN_ROUTES:
        return Scope.ADMIN
    if (method, path) in _WRITE_ROUTES:
        return Scope.WRITE
    if method in ("GET", "HEAD") or (method == "POST" and path in _READ_POSTS):
        return Scope.READ
    if path == "/registry/{path:path}":  # endpoints the registry does not implement: 404s
        return Scope.READ
    return Scope.ADMIN


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or name the API binds) is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def describe_key_policy(settings: Settings) -> str:
    """When this API will require keys, in words for its start-up line."""
    required = settings.security.require_keys
    if required is True:
        return "required (security.require_keys=true)"
    if required is False:
        return "OFF (security.require_keys=false; loopback only)"
    if is_loopback(settings.serving.host):
        return "required once any key exists (loopback)"
    return "required (listening beyond loopback)"


class UnauthorizedError(ServingError):
    """No key, or one that is not valid: 401 with ``WWW-Authenticate``."""

    http_status = 401


class ForbiddenError(ServingError):
    """A valid key without the scope or grant the request needs: 403 naming what is missing."""

    http_status = 403


@dataclass(frozen=True)
class Principal:
    """The caller: a key, or anyone when keys are off (a laptop on loopback)."""

    actor: str
    key: ApiKey | None = None

    @property
    def grants(self) -> Grants:
        return self.key.grants if self.key is not None else Grants(pii=(ANY,))

    def allows(self, scope: Scope) -> bool:
        return self.key is None or self.key.scope.includes(scope)


def _target(request: Request) -> str:
    return f"{request.method} {request.url.path}"


def _token(headers: Mapping[str, str]) -> str | None:
    header = headers.get("authorization", "")
    kind, _, value = header.partition(" ")
    if kind.lower() == "bearer" and value.strip():
        return value.strip()
    if kind.lower() == "basic" and value.strip():
        try:
            user, _, password = base64.b64decode(value.strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return password or user
    return headers.get("x-api-key") or None


class Guard:
    """The app-wide dependency that authenticates and authorizes every request."""

    def __init__(
        self,
        catalog: Catalog,
        settings: Settings,
        definitions: Callable[[], Awaitable[Definitions]],
    ) -> None:
        """``definitions``: the app's view of the catalog's definitions, read off the event
        loop (``FreshDefinitions``); they map a schema subject to its source."""
        security = settings.security
        self._loopback = is_loopback(settings.serving.host)
        if security.require_keys is False and not self._loopback:
            msg = (
                f"security.require_keys=false is refused: the API listens on "
                f"{settings.serving.host}, beyond loopback; create keys (`headwater keys "
                "create`) or serve on 127.0.0.1"
            )
            raise ConfigError(msg)
        self._catalog = catalog
        self._definitions = definitions
        self._keys = catalog.key_store(load_server_secret(security, settings.home))
        self._require = security.require_keys
        self._ttl = security.key_cache_seconds
        self._verified: dict[bytes, ApiKey] = {}
        self._any_key: bool | None = None
        self._token: tuple[int, ...] | None = None
        self._read_at = time.monotonic()
        self._looked_at = 0.0
        self._audit = ThreadPoolExecutor(1, thread_name_prefix="audit")

    def close(self) -> None:
        self._audit.shutdown(wait=True)

    def _fresh(self) -> bool:
        """Whether what was read from the catalog may still be used: on SQLite until the
        file changes (so a key made or revoked counts from the next request); on a server
        database for ``security.key_cache_seconds``."""
        now = time.monotonic()
        if now - self._looked_at < _LOOK_EVERY_S:
            return True  # under load: at most one look at the file per interval
        self._looked_at = now
        token = self._catalog.change_token()
        if token is None:
            return now - self._read_at <= self._ttl
        if token != self._token:
            self._token, self._any_key, self._verified = token, None, {}
            return False
        return True

    async def keys_required(self) -> bool:
        """Whether this request needs a key (see the module docstring)."""
        if self._require is not None:
            return self._require
        if not self._loopback:
            return True
        if self._any_key is None or not self._fresh():
            self._read_at = time.monotonic()
            self._any_key = await run_in_threadpool(self._keys.any_active)
        return self._any_key

    def _cached_key(self, token: str) -> tuple[bytes, ApiKey | None]:
        """The token's digest and the key verified for it while the catalog is unchanged."""
        digest = hashlib.sha256(token.encode()).digest()
        if not self._fresh():
            self._verified, self._read_at = {}, time.monotonic()
        return digest, self._verified.get(digest)

    async def _key(self, token: str) -> tuple[ApiKey | None, str]:
        digest, cached = self._cached_key(token)
        if cached is not None:
            return cached, ""
        key, reason = await run_in_threadpool(self._keys.verify, token)
        if key is not None:
            if len(self._verified) > 10_000:
                self._verified.clear()
            self._verified[digest] = key
        return key, reason

    def refuse(
        self, target: str, error: ServingError, actor: str, detail: dict[str, Any]
    ) -> ServingError:
        """Audit a refusal of ``target`` (``"POST /v1/push/x"``) in the background: the answer
        does not wait for the catalog."""
        entry = {**detail, "status": error.http_status, "reason": str(error)}

        def record() -> None:
            try:
                with acting_as(actor):
                    self._catalog.record("refused", target, entry, outcome="refused")
            except CatalogError:
                log.exception("could not audit a refused request to %s", target)

        self._audit.submit(record)
        return error

    async def __call__(self, request: Request) -> None:
        route = request.scope.get("route")
        path = getattr(route, "path", request.url.path)
        scope = required_scope(request.method, path)
        if scope is None:
            return
        client = request.client.host if request.client else "unknown"
        if not await self.keys_required():
            principal = Principal(f"anonymous@{client}")
        else:
            principal = await self._authenticate(request, client)
        if not principal.allows(scope):
            held = principal.key.scope.value if principal.key else ""
            error = ForbiddenError(
                f"this request needs a key with scope {scope.value!r}; key "
                f"{principal.key.id if principal.key else ''} has {held!r}",
                field="header.authorization",
            )
            raise self.refuse(_target(request), error, principal.actor, {"needs": scope.value})
        if scope is Scope.WRITE:
            await self._authorize_write(request, path, principal)
        request.state.principal = principal
        set_actor(principal.actor)

    async def plain_reader(self, headers: Mapping[str, str], client: str) -> Principal | None:
        """The caller of a read request when it is plainly allowed without asking the
        catalog for its key (no key needed, or a key verified earlier with a read scope);
        ``None`` otherwise, and nothing refused or audited: the lean lookup path
        (``serving.lookup_route``) then hands the request to the full app, which decides."""
        if not await self.keys_required():
            return Principal(f"anonymous@{client}")
        token = _token(headers)
        if token is None:
            return None
        _, key = self._cached_key(token)
        if key is None or not key.scope.includes(Scope.READ):
            return None
        return Principal(key.actor, key)

    def authorize_features(
        self, principal: Principal | None, resolved: ResolvedFeatures, target: str
    ) -> None:
        """Refuse (403, every refused feature named) a lookup of features the caller's key
        has no grant for: feature sets outside its grants, and ``pii`` features without a
        pii grant.

        Raises:
            ForbiddenError: at least one feature is not granted; nothing was read.
        """
        if principal is None or principal.key is None:
            return
        refused = list(_refused_features(resolved, principal.grants))
        if refused:
            names = [ref for ref, _ in refused]
            shown = ", ".join(names[:10])
            if len(names) > 10:
                shown += f" and {len(names) - 10} more"
            error = ForbiddenError(
                f"key {principal.key.id} may not read {shown}; nothing was returned",
                errors=[item for _, item in refused],
            )
            raise self.refuse(target, error, principal.actor, {"features": names})

    async def _authenticate(self, request: Request, client: str) -> Principal:
        token = _token(request.headers)
        if token is None:
            error = UnauthorizedError(
                f"this API needs an API key; {_HOW} (an admin creates one with "
                "`headwater keys create --name NAME --scope read`)",
                field="header.authorization",
                headers={"WWW-Authenticate": 'Bearer, Basic realm="headwater"'},
            )
            raise self.refuse(_target(request), error, f"anonymous@{client}", {})
        key, reason = await self._key(token)
        if key is None:
            error = UnauthorizedError(
                f"the API key was refused: {reason}",
                field="header.authorization",
                headers={"WWW-Authenticate": 'Bearer, Basic realm="headwater"'},
            )
            raise self.refuse(_target(request), error, f"anonymous@{client}", {})
        return Principal(key.actor, key)

    async def _authorize_write(self, request: Request, path: str, principal: Principal) -> None:
        if principal.key is None:
            return
        if path == "/v1/push/{source}":
            source = str(request.path_params.get("source", ""))
        else:  # schema registration: the subject's source
            subject = str(request.path_params.get("subject", ""))
            defs = await self._definitions()
            owners = [s.name for s in defs.sources if s.subject == subject]
            if not owners:
                if principal.key.scope.includes(Scope.ADMIN):
                    return
                error = ForbiddenError(
                    f"subject {subject!r} belongs to no source; registering it needs an admin "
                    "key (write keys register the schemas of their sources)",
                    field="path.subject",
                )
                raise self.refuse(_target(request), error, principal.actor, {"subject": subject})
            source = owners[0]
        if not principal.grants.source(source):
            error = ForbiddenError(
                f"key {principal.key.id} has no grant for source {source!r}; an admin can "
                f"issue one with `headwater keys create --scope write --source {source}`",
                field="path.source",
            )
            raise self.refuse(_target(request), error, principal.actor, {"source": source})


def _refused_features(
    resolved: ResolvedFeatures, grants: Grants
) -> Iterable[tuple[str, ErrorItem]]:
    # A request feature needs its own set's grant and every grant its stored inputs need:
    # its value is computed from them (a ratio to a pii amount reveals the amount).
    for i, (kind, index) in enumerate(resolved.outputs):
        if kind == "stored":
            p, f = resolved.columns[index]
            fs = resolved.plans[p].feature_set
            ref = f"{fs.name}:{fs.features[f].name}"
            refusal = _refusal(fs, fs.features[f], grants)
            if refusal is not None:
                pii, reason = refusal
                yield (
                    ref,
                    ErrorItem(
                        f"features[{i}]", f"{ref} is {reason}" if pii else f"{ref}: {reason}"
                    ),
                )
            continue
        column = resolved.request_columns[index]
        own = column.feature.feature_set
        ref = f"{own.name}:{column.feature.name}"
        if not grants.feature_set(own.name):
            reason = f"no grant for feature set {own.name!r} (keys create --feature-set {own.name})"
            yield ref, ErrorItem(f"features[{i}]", f"{ref}: {reason}")
            continue
        for dependency in column.feature.dependencies:
            fs = dependency.feature_set
            refusal = _refusal(fs, fs.feature(dependency.feature), grants)
            if refusal is not None:
                pii, reason = refusal
                read = f"{ref} reads {fs.name}:{dependency.feature}"
                text = f"{read}, which is {reason}" if pii else f"{read}: {reason}"
                yield ref, ErrorItem(f"features[{i}]", text)
                break


def _refusal(fs: FeatureSet, feature: Feature, grants: Grants) -> tuple[bool, str] | None:
    """``(is it the pii grant, why)`` ``grants`` may not read ``feature`` of ``fs``, or
    ``None`` when they may."""
    if not grants.feature_set(fs.name):
        return False, f"no grant for feature set {fs.name!r} (keys create --feature-set {fs.name})"
    if fs.is_pii(feature) and not grants.pii_of(fs.name):
        return True, f"tagged pii: reading it needs a pii grant (keys create --pii {fs.name})"
    return None


def authorize_features(guard: Guard, request: Request, resolved: ResolvedFeatures) -> None:
    """``Guard.authorize_features`` for the caller the Guard left on ``request``."""
    principal: Principal | None = getattr(request.state, "principal", None)
    guard.authorize_features(principal, resolved, _target(request))
