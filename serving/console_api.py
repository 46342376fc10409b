"""The web console (``/ui``) and the JSON endpoints only it needed.

The console is static files shipped inside the package (``serving/console/``, read with
``importlib.resources``: no internet, no build step, the same files in an editable and a
wheel install). They hold no data, so they load without a key (``auth.OPEN_PATHS``); every
number on a page comes from the JSON API, under the same keys as any other client.

The endpoints: one page of catalog search (``/v1/catalog/search``), a source with its schema
(``/v1/sources/{name}``), the diff of two feature-set versions
(``/v1/feature-sets/{name}/diff``) and a sample of a source's dead letters
(``/v1/dead-letters/{source}``).
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import RedirectResponse, Response

from headwater.connectors.catalog import Catalog
from headwater.schemas.settings import KafkaSettings
from headwater.serving.console_views import MAX_PAGE, search_catalog, source_view, version_diff
from headwater.serving.dead_letter_views import count_dead_letters, sample_dead_letters
from headwater.serving.errors import NotFoundError

__all__ = ["CONSOLE_PACKAGE", "console_asset", "console_router"]

CONSOLE_PACKAGE = "headwater.serving.console"
"""Where the console's files live (declared as package data in pyproject.toml)."""

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}


_SAFE = {
    # Only this server's own files and API: no inline script or style, no other origin, no
    # framing. A name or description from the catalog can never run as code.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def console_asset(name: str) -> tuple[bytes, str] | None:
    """The bytes and content type of one console file, ``None`` for anything else (other
    names, other suffixes, paths: only the package's own top-level files are served)."""
    if "/" in name or "\\" in name or name.startswith("."):
        return None
    suffix = name[name.rfind(".") :] if "." in name else ""
    if suffix not in _TYPES:
        return None
    resource = resources.files(CONSOLE_PACKAGE).joinpath(name)
    if not resource.is_file():
        return None
    return resource.read_bytes(), _TYPES[suffix]


def _asset_response(name: str) -> Response:
    found = console_asset(name)
    if found is None:
        raise NotFoundError(f"the console has no file {name!r}; open /ui/", field="path.asset")
    body, media_type = found
    # Revalidated on every load: an upgraded package shows its new console at once.
    return Response(body, media_type=media_type, headers={"Cache-Control": "no-cache", **_SAFE})


def console_router(catalog: Catalog, kafka: KafkaSettings) -> APIRouter:
    """The console's files and its JSON endpoints, on ``catalog`` and the Kafka cluster whose
    dead-letter topics it samples."""
    router = APIRouter()

    @router.get("/ui", include_in_schema=False)
    def console_root() -> RedirectResponse:
        return RedirectResponse("/ui/", status_code=307)

    @router.get("/ui/", include_in_schema=False)
    def console_index() -> Response:
        return _asset_response("index.html")

    @router.get("/ui/{asset}", include_in_schema=False)
    def console_file(asset: str) -> Response:
        return _asset_response(asset)

    @router.get("/v1/catalog/search")
    def catalog_search(
        q: str = "",
        offset: int = Query(0, ge=0),
        limit: int = Query(50, ge=1, le=MAX_PAGE),
    ) -> dict[str, Any]:
        """One page of the feature sets matching ``q`` (every word, in the set or its
        features), with the total: ``{"total", "offset", "limit", "items": [...]}``."""
        return search_catalog(catalog.definitions(), q, offset=offset, limit=limit)

    @router.get("/v1/sources/{name}")
    def source(name: str) -> dict[str, Any]:
        """A source's topics, event-time field, schema fields and the sets reading it."""
        return source_view(catalog.definitions(), name)

    @router.get("/v1/feature-sets/{name}/diff")
    def feature_set_diff(
        name: str,
        old: int = Query(alias="from", ge=1),
        new: int = Query(alias="to", ge=1),
    ) -> dict[str, Any]:
        """Breaking and compatible changes between two versions, as ``apply`` words them."""
        return version_diff(
            catalog.feature_set_versions(name),
            catalog.definitions(include_retired=True),
            name,
            old,
            new,
        )

    @router.get("/v1/dead-letters/{source}")
    def dead_letters(
        source: str, reason: str | None = None, limit: int = Query(20, ge=1, le=MAX_PAGE)
    ) -> dict[str, Any]:
        """Counts by reason and the first ``limit`` letters (of ``reason``) of a source.

        Reads the dead-letter topic with a throwaway consumer (no group): looking moves no
        offsets. Runs in a worker thread (a plain ``def``), never on the event loop.
        """
        defs = catalog.definitions()
        found = [s for s in defs.sources if s.name == source]
        if not found:
            known = sorted(s.name for s in defs.sources)
            msg = f"unknown source {source!r}; known: {known}"
            raise NotFoundError(msg, field="path.source")
        counts = count_dead_letters(kafka, found)
        letters, matching = sample_dead_letters(catalog, kafka, source, reason=reason, limit=limit)
        return {
            "source": source,
            "topic": found[0].dlq_topic,
            "reason": reason,
            "total": sum(c.letters for c in counts),
            "matching": matching,
            "counts": [
                {
                    "reason": c.reason,
                    "letters": c.letters,
                    "replayed": c.replayed,
                    "pending": c.pending,
                }
                for c in counts
            ],
            "letters": [
                {
                    "partition": v.partition,
                    "offset": v.offset,
                    "reason": v.reason,
                    "field": v.field,
                    "error": v.error,
                    "error_class": v.error_class,
                    "event_time": v.event_time,
                    "source_position": v.source_position,
                    "replayed": v.replayed,
                }
                for v in letters
            ],
        }

    return router
