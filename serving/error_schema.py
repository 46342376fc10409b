"""The error bodies, as OpenAPI models, so the schema the API publishes is the one it answers.

FastAPI documents a 422 of its own shape (``HTTPValidationError``: a list of pydantic
errors); the app answers every error with ``{"detail", "errors"}`` instead
(``serving.errors``), and the registry with Confluent's ``{"error_code", "message"}``.
These models declare those shapes (``ERROR_RESPONSES``, ``REGISTRY_ERROR_RESPONSES``).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

__all__ = ["ERROR_RESPONSES", "REGISTRY_ERROR_RESPONSES", "ErrorBody", "RegistryErrorBody"]


class ErrorItemBody(BaseModel):
    field: str = Field(
        description="Dotted, indexed path of the field at fault, e.g. events[0].amount"
    )
    reason: str
    index: int | None = Field(default=None, description="Index of the event (push only)")


class ErrorBody(BaseModel):
    detail: str = Field(description="What went wrong and the fix")
    errors: list[ErrorItemBody] = Field(description="The problems by field (at most 100)")
    errors_total: int | None = Field(
        default=None, description="How many problems there were, when more than are listed"
    )


class RegistryErrorBody(BaseModel):
    error_code: int
    message: str


def _declared(model: type[BaseModel], codes: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": model, "description": text} for code, text in codes.items()}


ERROR_RESPONSES = _declared(
    ErrorBody,
    {
        404: "Unknown feature set, feature, feature service or source",
        413: "Body, entity count or event count over its limit",
        422: "The request is invalid; errors name each field",
        503: "A store (Redis, Kafka, the catalog) is unavailable; see Retry-After",
    },
)
"""Declared on every operation of the app (an operation's own declarations win)."""

REGISTRY_ERROR_RESPONSES = _declared(
    RegistryErrorBody,
    {
        404: "Unknown subject, version or schema (Confluent error body)",
        409: "Incompatible schema (Confluent error body)",
        422: "Invalid schema or request (Confluent error body)",
    },
)
"""Declared on the schema registry's operations, which answer Confluent's error body."""
