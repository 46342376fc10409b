"""The root of every Headwater error, so callers can catch the whole family at once."""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DefinitionError",
    "EventError",
    "FeatureStoreError",
    "UnknownNameError",
]


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


class UnknownNameError(FeatureStoreError, KeyError):
    """A lookup by name found nothing: an entity, source, feature set (or version of one),
    feature or feature service; the message lists the known names.

    A ``KeyError`` too, so code that catches lookups the built-in way keeps working.

    Attributes:
        kind: what was looked up (``"source"``, ``"feature set"``...).
        name: the name that was not found.
    """

    def __init__(self, message: str, *, kind: str, name: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.name = name

    def __str__(self) -> str:
        # KeyError's own __str__ shows the repr of its argument (quotes and escapes).
        return str(self.args[0]) if self.args else ""
