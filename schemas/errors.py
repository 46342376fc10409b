"""The root of every Headwater error, so callers can catch the whole family at once."""

from __future__ import annotations

__all__ = ["ConfigError", "DefinitionError", "EventError", "FeatureStoreError"]


class FeatureStoreError(Exception):
    """Root of all Headwater errors."""


class ConfigError(FeatureStoreError, ValueError):
    """A setting is missing or invalid; the message names the setting and the fix."""


class DefinitionError(FeatureStoreError, ValueError):
    """A feature definition is invalid; the message names the file, the path and the fix."""


class EventError(FeatureStoreError, ValueError):
    """An event cannot be accepted (bad timestamp, schema violation, too far in the future).

    Attributes:
        field: the event field at fault, or ``None`` when the whole event is.
        reason: a short machine-readable reason used for DLQ headers and metrics.
    """

    def __init__(self, message: str, *, field: str | None = None, reason: str = "invalid") -> None:
        super().__init__(message)
        self.field = field
        self.reason = reason
