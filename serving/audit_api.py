"""``GET /v1/audit``: the audit trail over HTTP, for admins (``headwater audit`` on the CLI)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from headwater.connectors.catalog import AuditQuery, Catalog

__all__ = ["audit_router"]


def audit_router(catalog: Catalog) -> APIRouter:
    router = APIRouter()

    @router.get("/v1/audit")
    async def audit(
        action: str | None = Query(default=None, max_length=64),
        actor: str | None = Query(default=None, max_length=255),
        outcome: str | None = Query(default=None, max_length=16),
        since_ms: int | None = Query(default=None, ge=0, le=2**53),
        limit: int = Query(default=1000, ge=1, le=10_000),
    ) -> list[dict[str, Any]]:
        """Who did what, to what, when, with which outcome: admin actions, deletions,
        erasures and refused requests, oldest first (the newest ``limit`` that match)."""
        query = AuditQuery(action, actor, outcome, since_ms, limit)
        entries = await run_in_threadpool(catalog.audit, query)
        return [e.to_dict() for e in entries]

    return router
