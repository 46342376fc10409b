"""Keys, scopes, grants and the request guards, without services (the catalog is SQLite)."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from headwater.connectors.catalog import Catalog, Grants, Scope, load_server_secret
from headwater.examples import EXAMPLES
from headwater.schemas.errors import ConfigError
from headwater.schemas.loader import load_definitions
from headwater.schemas.settings import Settings, load_settings
from headwater.serving.app import create_app
from headwater.serving.auth import OPEN_PATHS, required_scope


def _settings(tmp_path: Path, **serving: object) -> Settings:
    return load_settings(home=tmp_path / "home", serving=serving)


def _catalog(settings: Settings) -> Catalog:
    catalog = Catalog(settings.catalog_url)
    defs = load_definitions(EXAMPLES)
    catalog.save(defs, defs.feature_sets, {})
    return catalog


def test_keys_are_stored_hashed_and_verified_by_their_secret(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    store = _catalog(settings).key_store(load_server_secret(settings.security, settings.home))
    issued = store.create("svc", Scope.WRITE, Grants(sources=("transactions",)))
    secret_file = settings.home / "security" / "server-secret"
    assert stat.S_IMODE(os.stat(secret_file).st_mode) == 0o600
    raw = (settings.home / "catalog.db").read_bytes()
    assert issued.token.encode() not in raw
    assert issued.token.split("_", 2)[2].encode() not in raw  # the secret is nowhere

    key, reason = store.verify(issued.token)
    assert key is not None and key.scope is Scope.WRITE and reason == ""
    assert key.grants.source("transactions") and not key.grants.source("other")
    assert store.verify(issued.token[:-1] + "x") == (None, f"wrong secret for key id {key.id}")
    assert store.verify("nonsense")[0] is None

    rotated = store.rotate(key.id)
    assert (
        store.verify(issued.token)[1] == f"key {key.id} is revoked (replaced by {rotated.key.id})"
    )
    assert store.verify(rotated.token)[0] is not None
    store.revoke(rotated.key.id)
    assert not store.any_active()
    # Another server secret cannot verify these keys, and says why.
    other = Catalog(settings.catalog_url).key_store(b"another secret")
    fresh = store.create("x", Scope.READ)
    assert "another server secret" in other.verify(fresh.token)[1]


def test_scopes_nest() -> None:
    assert Scope.ADMIN.includes(Scope.WRITE) and Scope.WRITE.includes(Scope.READ)
    assert not Scope.READ.includes(Scope.WRITE) and not Scope.WRITE.includes(Scope.ADMIN)


def test_every_route_has_a_decided_scope(tmp_path: Path) -> None:
    """A new endpoint needs admin until the access table names it; these are the decisions."""
    settings = _settings(tmp_path)
    _catalog(settings)
    app = create_app(settings)
    decided = {
        (method.upper(), path): required_scope(method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    }
    for route in app.routes:  # the routes the description leaves out
        if isinstance(route, APIRoute):
            for method in route.methods:
                decided[(method, route.path)] = required_scope(method, route.path)
    assert decided[("POST", "/v1/online-features")] is Scope.READ
    assert decided[("POST", "/v1/push/{source}")] is Scope.WRITE
    assert decided[("POST", "/registry/subjects/{subject}/versions")] is Scope.WRITE
    assert decided[("DELETE", "/registry/subjects/{subject}")] is Scope.ADMIN
    assert decided[("GET", "/v1/audit")] is Scope.ADMIN
    assert decided[("GET", "/healthz")] is None and decided[("GET", "/readyz")] is None
    assert decided[("GET", "/metrics")] is Scope.READ
    unexpected_admin = {
        k for k, v in decided.items() if v is Scope.ADMIN and k[0] in ("GET", "HEAD")
    } - {("GET", "/v1/audit")}
    assert not unexpected_admin
    assert {p for _, p in decided if p in OPEN_PATHS} <= OPEN_PATHS


def test_keys_off_is_refused_beyond_loopback(tmp_path: Path) -> None:
    settings = load_settings(
        home=tmp_path / "home", serving={"host": "0.0.0.0"}, security={"require_keys": False}
    )
    _catalog(settings)
    with pytest.raises(ConfigError, match="require_keys=false is refused"):
        create_app(settings)


def test_without_keys_on_loopback_a_laptop_needs_none_until_the_first_key(tmp_path: Path) -> None:
    """The first key, and a revocation, count within 50 ms (SQLite catalog: the guard sees
    the file change; no cache delay)."""
    settings = load_settings(home=tmp_path / "home")
    catalog = _catalog(settings)
    store = catalog.key_store(load_server_secret(settings.security, settings.home))
    with TestClient(create_app(settings)) as client:
        assert client.get("/v1/feature-sets").status_code == 200
        first = store.create("first", Scope.READ)
        time.sleep(0.06)
        assert client.get("/v1/feature-sets").status_code == 401
        headers = {"Authorization": f"Bearer {first.token}"}
        assert client.get("/v1/feature-sets", headers=headers).status_code == 200
        store.create("second", Scope.READ)  # keys stay on once the first is revoked
        store.revoke(first.key.id)
        time.sleep(0.06)
        assert client.get("/v1/feature-sets", headers=headers).status_code == 401


def test_beyond_loopback_every_request_but_health_needs_a_key(tmp_path: Path) -> None:
    settings = _settings(tmp_path, host="0.0.0.0")
    _catalog(settings)
    with TestClient(create_app(settings)) as client:
        refused = client.get("/v1/feature-sets")
        assert refused.status_code == 401
        assert refused.headers["WWW-Authenticate"].startswith("Bearer")
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/docs").status_code == 200


def test_cross_site_content_types_and_untrusted_hosts_are_refused(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    _catalog(settings)
    with TestClient(create_app(settings)) as client:
        for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
            headers = {"Content-Type": content_type} if content_type else {}
            r = client.post("/v1/push/transactions", content=b'{"events": []}', headers=headers)
            assert r.status_code == 415, (content_type, r.text)
            assert r.json()["errors"][0]["field"] == "header.content-type"
        assert client.get("/healthz", headers={"Host": "evil.example:8000"}).status_code == 400
        assert client.get("/healthz", headers={"Host": "localhost:8000"}).status_code == 200
        assert client.get("/healthz", headers={"Host": "[::1]:8000"}).status_code == 200
    trusting = load_settings(home=tmp_path / "home", security={"trusted_hosts": ["*"]})
    with TestClient(create_app(trusting)) as client:
        assert client.get("/healthz", headers={"Host": "evil.example"}).status_code == 200
