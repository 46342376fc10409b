"""Errors of ``headwater up`` / ``headwater down``.

Every message is one line that names what went wrong and how to fix it, because the CLI prints
it verbatim in red and a user should not need a traceback to act on it.
"""

from __future__ import annotations

from headwater.schemas.errors import ConfigError, FeatureStoreError

__all__ = [
    "DependencyResolutionError",
    "PortInUseError",
    "ServiceStartError",
    "StackConfigError",
    "StackError",
    "ToolMissingError",
]


class StackError(FeatureStoreError):
    """The local services (Kafka broker, redis-server) could not be started or stopped."""


class ToolMissingError(StackError):
    """A program the stack needs (java 17+, mvn, redis-server) is missing or too old."""


class DependencyResolutionError(StackError):
    """Maven could not resolve the Kafka broker jars (usually no route to Maven Central)."""


class PortInUseError(StackError):
    """A configured port is taken by something that is not the expected service."""


class ServiceStartError(StackError):
    """A service was launched but exited or did not answer within ``stack.start_timeout_s``."""


class StackConfigError(StackError, ConfigError):
    """A ``stack``/``kafka``/``redis`` setting cannot describe a local service."""
