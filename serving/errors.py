"""Errors of the serving layer and the one mapping of every error to an HTTP answer.

Every JSON endpoint answers an error with one body shape::

    {"detail": "<one sentence>", "errors": [{"field": "entities.user_id", "reason": "..."}]}

``detail`` says what went wrong and the fix; ``errors`` lists the problems by field (a dotted,
indexed path into the request such as ``entities.user_id`` or ``events[0]``), empty when no
single field is at fault. The push endpoint's items also carry the ``index`` of the event.
The schema registry under ``/registry`` is the exception: Confluent's clients parse its
``{"error_code", "message"}`` body (``serving.registry``).

``http_status`` and ``error_body`` are the mapping; ``serving.error_handlers`` installs it in
the app. Nothing here imports the web framework.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from headwater.connectors.errors import StoreFaultError
from headwater.schemas.errors import EventError, FeatureStoreError, UnknownNameError

__all__ = [
    "BadRequestError",
    "ConflictError",
    "ErrorItem",
    "InvalidEventsError",
    "NotFoundError",
    "OutcomeUnknownError",
    "PayloadTooLargeError",
    "ServingError",
    "UnavailableError",
    "bounded",
    "error_body",
    "http_status",
]


@dataclass(frozen=True, slots=True)
class ErrorItem:
    """One problem of a request: the field at fault and why.

    ``index`` is the position of the event in a push request (``None`` elsewhere).
    """

    field: str
    reason: str
    index: int | None = None

    def as_dict(self) -> dict[str, Any]:
        if self.index is None:
            return {"field": self.field, "reason": self.reason}
        return {"index": self.index, "field": self.field, "reason": self.reason}


class ServingError(FeatureStoreError):
    """An error answered over HTTP with ``http_status``.

    Args:
        message: the ``detail`` sentence.
        field: the request field at fault; gives one error item with ``message`` as reason.
        errors: the problems, when there are several (``field`` is then not given).
        headers: extra response headers (``Retry-After``).
    """

    http_status = 500

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        errors: Sequence[ErrorItem] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        if field is not None:
            errors = (ErrorItem(field, message), *errors)
        self.errors: tuple[ErrorItem, ...] = tuple(errors)
        self.headers: dict[str, str] = dict(headers or {})


class NotFoundError(ServingError, KeyError):
    """A feature set, feature or feature service that does not exist."""

    http_status = 404

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class BadRequestError(ServingError, ValueError):
    """A request that is well-formed JSON but asks for something invalid."""

    http_status = 422


class InvalidEventsError(BadRequestError):
    """Some events of a push request are invalid, so none of the request was accepted.

    ``errors`` holds every problem, in event order, each with the event's ``index``.
    """

    def __init__(self, problems: Sequence[ErrorItem], total: int) -> None:
        bad = len({p.index for p in problems})
        message = f"{bad} of {total} event(s) are invalid; nothing was accepted"
        super().__init__(message, errors=problems)


class PayloadTooLargeError(ServingError):
    """A request over a size limit (events per request, body bytes); the message names the setting."""

    http_status = 413


class ConflictError(ServingError):
    """The request collides with another one still being processed (same Idempotency-Key)."""

    http_status = 409


class OutcomeUnknownError(ServingError):
    """A store did not confirm a write in time: it may or may not have happened."""

    http_status = 504


class UnavailableError(ServingError):
    """A service the request needs did not answer in time; ``Retry-After`` says when to retry."""

    http_status = 503


_PROJECT_STATUS: tuple[tuple[type[FeatureStoreError], int], ...] = (
    (UnknownNameError, 404),
    (EventError, 422),
)
"""The HTTP status of the project's own errors that are not ``ServingError``s; any other is 500."""


def http_status(exc: FeatureStoreError) -> int:
    """The HTTP status that answers ``exc``: a store that failed (Redis, Kafka, the catalog
    database) is 503, for the client to retry (``Retry-After``), not a 500."""
    if isinstance(exc, ServingError):
        return exc.http_status
    if isinstance(exc, StoreFaultError):
        return 503
    for kind, status in _PROJECT_STATUS:
        if isinstance(exc, kind):
            return status
    return 500


def error_body(exc: FeatureStoreError) -> dict[str, Any]:
    """The JSON body that answers ``exc`` (see the module docstring)."""
    if isinstance(exc, StoreFaultError):
        # Store messages may name the store's URL (with credentials); the log has them.
        detail = f"the {exc.store} store failed ({type(exc).__name__}); see the server's log"
        return {"detail": detail, "errors": []}
    detail = str(exc)
    if isinstance(exc, ServingError):
        items = [e.as_dict() for e in exc.errors]
    elif isinstance(exc, EventError) and exc.field is not None:
        items = [ErrorItem(exc.field, detail).as_dict()]
    else:
        items = []
    return {"detail": detail, "errors": items}


MAX_ERROR_ITEMS = 100
"""Most items an error body lists; the detail then says how many there were."""
_MAX_DETAIL = 2000
_MAX_ITEM_TEXT = 500


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def bounded(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` cut to a size independent of the request's: at most ``MAX_ERROR_ITEMS``
    items (``errors_total`` then counts them all) and texts of bounded length. A request of
    thousands of bad events or unknown fields must not get an answer many times its size."""
    items = body.get("errors") or []
    detail = _clip(str(body.get("detail", "")), _MAX_DETAIL)
    out: dict[str, Any] = {
        **body,
        "detail": detail,
        "errors": [
            {k: _clip(v, _MAX_ITEM_TEXT) if isinstance(v, str) else v for k, v in item.items()}
            for item in items[:MAX_ERROR_ITEMS]
        ],
    }
    if len(items) > MAX_ERROR_ITEMS:
        out["detail"] = (
            f"{detail} (the first {MAX_ERROR_ITEMS} of {len(items)} problems are listed)"
        )
        out["errors_total"] = len(items)
    return out
