"""The catalog's definitions for async endpoints, read off the event loop.

``Catalog.definitions`` is a synchronous database query (SQLite or PostgreSQL). Called from an
async endpoint it would hold the event loop for as long as the database takes, and a slow or
unreachable catalog would stall every request, ``/healthz`` included. ``FreshDefinitions``
keeps the last definitions for ``max_age_s`` (the hot path costs a clock read) and, when they
are older, reads them again in a worker thread. While one refresh is under way, other
requests keep the previous definitions instead of queueing more queries.
"""

from __future__ import annotations

import asyncio
import time

from headwater.connectors.catalog import Catalog, CatalogError
from headwater.connectors.errors import store_faults
from headwater.schemas.definitions import Definitions

__all__ = ["FreshDefinitions"]


class FreshDefinitions:
    """``await fresh()``: the catalog's definitions, at most ``max_age_s`` old (or, while a
    refresh is in flight, the previous ones).

    Raises (from ``__call__``):
        CatalogError: nothing was applied yet.
        StoreFaultError: the catalog database failed (answered 503).
    """

    def __init__(self, catalog: Catalog, max_age_s: float) -> None:
        self._catalog = catalog
        self._max_age_s = max_age_s
        self._defs: Definitions | None = None
        self._read_at = 0.0
        self._refreshing = False

    async def __call__(self) -> Definitions:
        defs = self._defs
        if defs is not None and (
            self._refreshing or time.monotonic() - self._read_at < self._max_age_s
        ):
            return defs
        self._refreshing = True
        try:
            defs = await asyncio.to_thread(self._read)
        finally:
            self._refreshing = False
        self._defs, self._read_at = defs, time.monotonic()
        return defs

    def _read(self) -> Definitions:
        with store_faults("catalog", "reading the definitions", CatalogError):
            return self._catalog.definitions()
