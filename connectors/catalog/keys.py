"""API keys: issued once, stored as an HMAC, checked by id, scoped and granted (DESIGN §8).

A key reads ``hw_<id>_<secret>``: the id (12 hex digits) finds the row, the secret (256 random
bits) proves possession. The catalog keeps HMAC-SHA256(server secret, secret), never the
secret: a copy of the catalog alone cannot be turned into working keys, and because secrets
are random (not passwords) a keyed hash is as strong as a slow password hash while costing
microseconds, so checking a key never becomes the API's bottleneck or a lever for load.

Scopes nest: ``read`` (lookups, catalog) < ``write`` (push, schema registration for its
sources) < ``admin`` (apply, retire, deletions, keys, erasure, the audit). Grants narrow a key
to feature sets (values it may read), sources (events and schemas it may write), and the
feature sets whose ``pii`` features it may read (none unless granted).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import sqlalchemy as sa

from headwater.connectors.catalog.audit import audit_row
from headwater.connectors.catalog.records import CatalogError
from headwater.connectors.catalog.tables import api_keys as _keys
from headwater.schemas.settings import SecuritySettings

__all__ = [
    "ANY",
    "ApiKey",
    "Grants",
    "IssuedKey",
    "KeyStore",
    "Scope",
    "load_server_secret",
]

ANY = "*"
"""A grant of every name (feature sets or sources)."""
_PREFIX = "hw"


class Scope(StrEnum):
    READ = "read"
    WRITE = "write"
    ADMIN = "admin"

    def includes(self, other: Scope) -> bool:
        """Whether a key of this scope may do what ``other`` needs (scopes nest)."""
        order = (Scope.READ, Scope.WRITE, Scope.ADMIN)
        return order.index(self) >= order.index(other)


@dataclass(frozen=True)
class Grants:
    """What a key may touch, by name; ``*`` is every name."""

    feature_sets: tuple[str, ...] = (ANY,)
    sources: tuple[str, ...] = (ANY,)
    pii: tuple[str, ...] = ()
    """Feature sets whose features tagged ``pii`` the key may read."""

    def feature_set(self, name: str) -> bool:
        return ANY in self.feature_sets or name in self.feature_sets

    def source(self, name: str) -> bool:
        return ANY in self.sources or name in self.sources

    def pii_of(self, name: str) -> bool:
        return ANY in self.pii or name in self.pii

    def to_dict(self) -> dict[str, list[str]]:
        return {
            "feature_sets": list(self.feature_sets),
            "sources": list(self.sources),
            "pii": list(self.pii),
        }

    @classmethod
    def from_dict(cls, body: dict[str, list[str]]) -> Grants:
        return cls(
            feature_sets=tuple(body.get("feature_sets", [ANY])),
            sources=tuple(body.get("sources", [ANY])),
            pii=tuple(body.get("pii", [])),
        )


@dataclass(frozen=True)
class ApiKey:
    """A key as the catalog knows it (without its secret)."""

    id: str
    name: str
    scope: Scope
    grants: Grants = field(default_factory=Grants)
    created_at_ms: int = 0
    revoked_at_ms: int | None = None
    replaced_by: str | None = None

    @property
    def actor(self) -> str:
        """How the audit names this key's holder."""
        return f"key:{self.id}:{self.name}"

    @property
    def active(self) -> bool:
        return self.revoked_at_ms is None

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "scope": self.scope.value,
            "grants": self.grants.to_dict(),
            "created_at_ms": self.created_at_ms,
            "revoked_at_ms": self.revoked_at_ms,
            "replaced_by": self.replaced_by,
        }


@dataclass(frozen=True)
class IssuedKey:
    """A new key with its secret text: shown once, never stored."""

    key: ApiKey
    token: str


def load_server_secret(security: SecuritySettings, home: Path) -> bytes:
    """The server secret keys are hashed with: ``security.secret``, else the one in
    ``<home>/security/server-secret``, created (random, mode 0600) on first use.

    Creation is exclusive, so processes starting together agree on one secret.
    """
    if security.secret is not None and security.secret.get_secret_value():
        return security.secret.get_secret_value().encode()
    path = home / "security" / "server-secret"
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):  # another process is writing it
            text = path.read_text().strip()
            if text:
                return text.encode()
            time.sleep(0.02)
        msg = f"{path} is empty; delete it (keys made with it stop working) or set security.secret"
        raise CatalogError(msg) from None
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_urlsafe(48))
    return path.read_text().strip().encode()


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _parse(token: str) -> tuple[str, str] | None:
    """``(id, secret)`` of a key's text, or ``None`` when it is not one."""
    parts = token.strip().split("_", 2)
    if len(parts) != 3 or parts[0] != _PREFIX or len(parts[1]) != 12 or not parts[2]:
        return None
    return parts[1], parts[2]


def _row_key(row: sa.Row[tuple[object, ...]]) -> ApiKey:
    m = row._mapping
    return ApiKey(
        id=str(m["id"]),
        name=str(m["name"]),
        scope=Scope(str(m["scope"])),
        grants=Grants.from_dict(json.loads(str(m["grants"]))),
        created_at_ms=int(str(m["created_at_ms"])),
        revoked_at_ms=None if m["revoked_at_ms"] is None else int(str(m["revoked_at_ms"])),
        replaced_by=None if m["replaced_by"] is None else str(m["replaced_by"]),
    )


class KeyStore:
    """Issuing, listing, rotating, revoking and verifying keys in the catalog database."""

    def __init__(self, engine: sa.Engine, server_secret: bytes) -> None:
        self._engine = engine
        self._secret = server_secret
        self._secret_id = hmac.new(server_secret, b"headwater-key-check", "sha256").hexdigest()[:16]

    def _hash(self, secret: str) -> str:
        return hmac.new(self._secret, secret.encode(), hashlib.sha256).hexdigest()

    def _insert(self, conn: sa.Connection, name: str, scope: Scope, grants: Grants) -> IssuedKey:
        key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        key = ApiKey(key_id, name, scope, grants, _now_ms())
        conn.execute(
            sa.insert(_keys).values(
                id=key_id,
                name=name,
                secret_hash=self._hash(secret),
                secret_id=self._secret_id,
                scope=scope.value,
                grants=json.dumps(grants.to_dict()),
                created_at_ms=key.created_at_ms,
            )
        )
        return IssuedKey(key, f"{_PREFIX}_{key_id}_{secret}")

    def create(self, name: str, scope: Scope, grants: Grants | None = None) -> IssuedKey:
        """A new key (audited as ``key_create``); its token is in the result only."""
        if not name.strip():
            msg = "a key needs a name that says who holds it, e.g. --name fraud-scoring"
            raise CatalogError(msg)
        with self._engine.begin() as conn:
            issued = self._insert(conn, name, scope, grants or Grants())
            conn.execute(audit_row("key_create", issued.key.id, issued.key.to_dict()))
        return issued

    def get(self, key_id: str) -> ApiKey:
        """The key with ``key_id``.

        Raises:
            CatalogError: no such key (the message says how to list them).
        """
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(_keys).where(_keys.c.id == key_id)).first()
        if row is None:
            msg = f"no API key with id {key_id!r}; list them with `headwater keys list`"
            raise CatalogError(msg)
        return _row_key(row)

    def list(self, *, include_revoked: bool = False) -> list[ApiKey]:
        """Every key, oldest first (revoked ones only when asked)."""
        query = sa.select(_keys).order_by(_keys.c.created_at_ms, _keys.c.id)
        if not include_revoked:
            query = query.where(_keys.c.revoked_at_ms.is_(None))
        with self._engine.connect() as conn:
            return [_row_key(r) for r in conn.execute(query).all()]

    def any_active(self) -> bool:
        """Whether any key is active (on loopback, keys are required from the first one)."""
        with self._engine.connect() as conn:
            row = conn.execute(
                sa.select(_keys.c.id).where(_keys.c.revoked_at_ms.is_(None)).limit(1)
            ).first()
        return row is not None

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key (audited as ``key_revoke``); revoking a revoked key changes nothing."""
        key = self.get(key_id)
        if not key.active:
            return key
        with self._engine.begin() as conn:
            conn.execute(
                sa.update(_keys).where(_keys.c.id == key_id).values(revoked_at_ms=_now_ms())
            )
            conn.execute(audit_row("key_revoke", key_id, {"name": key.name}))
        return self.get(key_id)

    def rotate(self, key_id: str) -> IssuedKey:
        """A new key with the same name, scope and grants; the old one is revoked at once
        (audited as ``key_rotate``). Deploy the new token before rotating, or expect refusals
        for up to ``security.key_cache_seconds`` in between."""
        old = self.get(key_id)
        if not old.active:
            msg = f"key {key_id!r} is revoked; create a new one with `headwater keys create`"
            raise CatalogError(msg)
        with self._engine.begin() as conn:
            issued = self._insert(conn, old.name, old.scope, old.grants)
            conn.execute(
                sa.update(_keys)
                .where(_keys.c.id == key_id)
                .values(revoked_at_ms=_now_ms(), replaced_by=issued.key.id)
            )
            conn.execute(audit_row("key_rotate", key_id, {"replaced_by": issued.key.id}))
        return issued

    def verify(self, token: str) -> tuple[ApiKey | None, str]:
        """``(key, "")`` for an active key's token, else ``(None, reason)``; the reason names
        no secret. Constant-time comparison of the hashes."""
        parsed = _parse(token)
        if parsed is None:
            return None, "not a Headwater API key (they read hw_<id>_<secret>)"
        key_id, secret = parsed
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(_keys).where(_keys.c.id == key_id)).first()
        if row is None:
            return None, f"unknown key id {key_id}"
        if row._mapping["secret_id"] != self._secret_id:
            return None, (
                f"key {key_id} was made with another server secret; give every host of this "
                "catalog the same security.secret"
            )
        if not hmac.compare_digest(str(row._mapping["secret_hash"]), self._hash(secret)):
            return None, f"wrong secret for key id {key_id}"
        key = _row_key(row)
        if not key.active:
            return None, f"key {key_id} is revoked" + (
                f" (replaced by {key.replaced_by})" if key.replaced_by else ""
            )
        return key, ""
