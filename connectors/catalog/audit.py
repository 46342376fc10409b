"""The audit trail: who did what, to what, when, and with which outcome.

Every catalog change (apply, retire, schema deletion, epoch reset, training set), every admin
action (keys, erasure) and every refused use of the API is one row of ``hw_audit``. The actor
comes from a context variable that the entry points set once (the API per request from the
caller's key, the CLI per command from the OS user or its key), so the code that changes the
catalog does not pass it through every call.
"""

from __future__ import annotations

import getpass
import json
import socket
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from headwater.connectors.catalog.records import AuditEntry
from headwater.connectors.catalog.tables import audit as _audit

__all__ = [
    "DEFINITION_ACTIONS",
    "AuditQuery",
    "acting_as",
    "audit_row",
    "current_actor",
    "local_actor",
    "read_audit",
    "set_actor",
]

DEFINITION_ACTIONS = ("apply", "retire")
"""Audit actions that change the definitions (the definitions cache watches their count)."""

_ACTOR: ContextVar[str] = ContextVar("headwater_actor", default="")


def current_actor() -> str:
    """Who is acting now: ``key:<id>:<name>``, ``cli:<user>@<host>``, or ``''`` (unknown)."""
    return _ACTOR.get()


def local_actor() -> str:
    """The actor of a command run on this machine: ``cli:<OS user>@<host>``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for the uid (containers)
        user = "unknown"
    return f"cli:{user}@{socket.gethostname()}"


def set_actor(actor: str) -> None:
    """Attribute what the current context does from now on to ``actor`` (an API request's
    dependency sets it once; its endpoint and the threads it starts inherit it)."""
    _ACTOR.set(actor)


@contextmanager
def acting_as(actor: str) -> Iterator[None]:
    """Attribute the audit entries written inside the block to ``actor``."""
    token = _ACTOR.set(actor)
    try:
        yield
    finally:
        _ACTOR.reset(token)


def audit_row(
    action: str, target: str, detail: Mapping[str, Any] | None = None, outcome: str = "ok"
) -> sa.Insert:
    """The insert of one audit entry by the current actor (run it in the change's transaction,
    so an entry exists exactly when the change does)."""
    return sa.insert(_audit).values(
        at_ms=time.time_ns() // 1_000_000,
        action=action,
        target=target[:255],
        detail=json.dumps(dict(detail or {}), sort_keys=True, default=str),
        actor=current_actor()[:255],
        outcome=outcome,
    )


@dataclass(frozen=True)
class AuditQuery:
    """Which entries to read: all by default; each field narrows."""

    action: str | None = None
    actor: str | None = None
    outcome: str | None = None
    since_ms: int | None = None
    limit: int = 1000
    """The newest ``limit`` entries that match, returned oldest first."""


def read_audit(engine: sa.Engine, query: AuditQuery) -> list[AuditEntry]:
    """The entries ``query`` selects, oldest first."""
    statement = sa.select(_audit)
    if query.action is not None:
        statement = statement.where(_audit.c.action == query.action)
    if query.actor is not None:
        statement = statement.where(_audit.c.actor == query.actor)
    if query.outcome is not None:
        statement = statement.where(_audit.c.outcome == query.outcome)
    if query.since_ms is not None:
        statement = statement.where(_audit.c.at_ms >= query.since_ms)
    statement = statement.order_by(_audit.c.id.desc()).limit(query.limit)
    with engine.connect() as conn:
        rows = conn.execute(statement).all()
    return [
        AuditEntry(r.at_ms, r.action, r.target, json.loads(r.detail), r.actor, r.outcome)
        for r in reversed(rows)
    ]
