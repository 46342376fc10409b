"""Errors raised by the stream workers and their maintenance commands."""

from __future__ import annotations

from headwater.schemas.errors import FeatureStoreError

__all__ = ["EventProcessingError", "RebuildRefusedError", "TopicTruncatedError"]


class EventProcessingError(FeatureStoreError):
    """An event failed in a way nobody foresaw and the worker is set to stop on it
    (``worker.on_processing_error: stop``); the message names the event and the setting."""


class TopicTruncatedError(FeatureStoreError):
    """A source topic ends before positions Headwater already stored: its log lost events
    (or was replaced under the same topic id). The message names the topic and the repair."""


class RebuildRefusedError(FeatureStoreError):
    """``rebuild-online`` cannot run safely now (workers of the deployment are running, or
    the version named is not active); the message names the fix."""
