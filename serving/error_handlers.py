"""The app's one error handler: every error of a JSON endpoint answered in one body shape.

``serving.errors`` decides the status and body of the project's errors; this module installs
that mapping in a FastAPI app and brings the framework's own errors to the same shape: a
request that does not match an endpoint's pydantic model (FastAPI answers 422 with a list of
its own by default), an unknown path or method (404, 405), and an unexpected exception (500,
without its text, which stays in the server's log).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, cast

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from headwater.connectors.errors import StoreFaultError
from headwater.schemas.errors import FeatureStoreError
from headwater.serving.errors import ErrorItem, ServingError, bounded, error_body, http_status

__all__ = [
    "install_error_handlers",
    "project_error_response",
    "unexpected_response",
    "validation_items",
]

log = logging.getLogger(__name__)

_LOCATIONS = frozenset({"body", "query", "path", "header", "cookie"})


def _answer(
    status: int, body: dict[str, Any], headers: Mapping[str, str] | None = None
) -> Response:
    return Response(
        orjson.dumps(bounded(body)),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def _field_path(loc: Sequence[int | str]) -> str:
    """``("body", "events", 0, "amount")`` -> ``events[0].amount``; the location alone
    (``body``) when the problem is the whole of it."""
    parts = list(loc)
    if len(parts) > 1 and parts[0] in _LOCATIONS:
        parts = parts[1:]
    path = ""
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "body"


def validation_items(errors: Sequence[Any]) -> list[ErrorItem]:
    """pydantic's errors of a request (``RequestValidationError.errors()``) as error items."""
    items = []
    for error in errors:
        loc = list(error.get("loc", ()))
        reason = str(error.get("msg", "invalid"))
        if error.get("type") == "json_invalid":
            # Its last location is the character where parsing failed, not a list index.
            position = loc.pop() if loc and isinstance(loc[-1], int) else None
            cause = (error.get("ctx") or {}).get("error")
            reason = f"the body is not valid JSON: {cause or reason}" + (
                f" (at character {position})" if position is not None else ""
            )
        items.append(ErrorItem(_field_path(loc), reason))
    return items


def _target(request: Request) -> str:
    return f"{request.method} {request.url.path}"


def project_error_response(error: FeatureStoreError, target: str, retry_after_s: int) -> Response:
    """The answer to one of the project's errors raised while serving ``target``
    (``"POST /v1/online-features"``); the status and body come from ``serving.errors``."""
    status = http_status(error)
    if status >= 500 and not isinstance(error, ServingError | StoreFaultError):
        # Not an answer we planned: keep the traceback, which the body leaves out.
        log.error("%s answered %d", target, status, exc_info=error)
    headers = error.headers if isinstance(error, ServingError) else None
    if isinstance(error, StoreFaultError):
        # The cause (with the store's address) goes to the log, never to the client.
        log.warning("%s: %s", target, error)
        headers = {"Retry-After": str(retry_after_s)}
    return _answer(status, error_body(error), headers)


def unexpected_response(exc: BaseException) -> Response:
    """500 for an exception nobody planned: its text may hold anything, so it is not sent."""
    detail = f"internal error ({type(exc).__name__}); see the server's log"
    return _answer(500, {"detail": detail, "errors": []})


def install_error_handlers(app: FastAPI, *, retry_after_s: int = 1) -> None:
    """Answer every error of ``app`` with ``{"detail", "errors"}`` (see ``serving.errors``),
    bounded in size whatever the request (``serving.errors.bounded``).

    Routers that answer errors their own way (the registry's Confluent body) turn them into
    responses before these handlers see them. A store fault is answered 503 with
    ``Retry-After: retry_after_s``.
    """

    async def project_error(request: Request, exc: Exception) -> Response:
        error = cast("FeatureStoreError", exc)  # registered for this class only
        return project_error_response(error, _target(request), retry_after_s)

    async def request_invalid(request: Request, exc: Exception) -> Response:
        items = validation_items(cast("RequestValidationError", exc).errors())
        problems = "; ".join(f"{i.field}: {i.reason}" for i in items[:5])
        if len(items) > 5:
            problems += f"; and {len(items) - 5} more"
        detail = f"the request does not match the endpoint's schema (see /docs): {problems}"
        return _answer(422, {"detail": detail, "errors": [i.as_dict() for i in items]})

    async def http_error(request: Request, exc: Exception) -> Response:
        error = cast("StarletteHTTPException", exc)  # registered for this class only
        if error.status_code in (204, 304):  # no body allowed
            return Response(status_code=error.status_code, headers=error.headers)
        return _answer(error.status_code, {"detail": error.detail, "errors": []}, error.headers)

    async def unexpected(request: Request, exc: Exception) -> Response:
        # Starlette logs the exception and re-raises it after this answer.
        return unexpected_response(exc)

    app.add_exception_handler(FeatureStoreError, project_error)
    app.add_exception_handler(RequestValidationError, request_invalid)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)
