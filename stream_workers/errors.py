"""Errors raised by the stream workers."""

from __future__ import annotations

from schemas.errors import FeatureStoreError

__all__ = ["EventProcessingError", "TopicTruncatedError"]


class EventProcessingError(FeatureStoreError):
    """An event failed in a way nobody foresaw and the worker is set to stop on it
    (``worker.on_processing_error: stop``); the message names the event and the setting."""


class TopicTruncatedError(FeatureStoreError):
    """A source topic ends before positions Headwater already stored: its log lost events
    (or was replaced under the same topic id). The message names the topic and the repair."""
