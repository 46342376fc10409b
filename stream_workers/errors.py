"""Errors raised by the stream workers and their maintenance commands."""

from __future__ import annotations

from schemas.errors import FeatureStoreError

__all__ = ["RebuildRefusedError"]


class RebuildRefusedError(FeatureStoreError):
    """``rebuild-online`` cannot run safely now (workers of the deployment are running, or
    the version named is not active); the message names the fix."""
