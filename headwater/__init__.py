"""Headwater: a streaming-first feature store. ``from headwater import FeatureStore``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["FeatureStore"]

if TYPE_CHECKING:
    from headwater.sdk import FeatureStore


def __getattr__(name: str) -> Any:
    # Lazy: `import headwater` (the CLI, the stack) must not pull in the serving stack.
    if name == "FeatureStore":
        from headwater.sdk import FeatureStore

        return FeatureStore
    msg = f"module 'headwater' has no attribute {name!r}"
    raise AttributeError(msg)
