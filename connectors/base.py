"""The interfaces of the two stores, so backends can be swapped and tested alike."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence

import pyarrow as pa

from headwater.schemas.definitions import FeatureSet
from headwater.schemas.tiles import EntityState

__all__ = ["BaseOfflineStore", "BaseOnlineStore", "EntityKey"]

EntityKey = tuple[str, ...]
"""An entity's key values, as text, in the order of the entity's ``keys``."""


class BaseOnlineStore(ABC):
    """Latest tile state per entity and feature-set version."""

    @abstractmethod
    def read(self, feature_set: FeatureSet, keys: Sequence[EntityKey]) -> list[EntityState | None]:
        """States in the order of ``keys``; ``None`` for an entity never written."""

    def read_many(
        self, requests: Sequence[tuple[FeatureSet, Sequence[EntityKey]]]
    ) -> list[list[EntityState | None]]:
        """``read`` for several feature sets; stores override it to use one round trip."""
        return [self.read(fs, keys) for fs, keys in requests]

    @abstractmethod
    def write(
        self,
        feature_set: FeatureSet,
        states: Mapping[EntityKey, EntityState],
        before: Mapping[EntityKey, EntityState | None],
    ) -> list[EntityKey]:
        """Store ``states`` atomically per entity, writing only what differs from ``before``.

        An entity whose stored state is no longer ``before`` (another writer got there first)
        is not written; its key is returned so the caller can re-read and retry. ``before``
        states must come from this store's ``read`` or an earlier ``write`` (they carry the
        stored encoding the diff is made against; ``states`` may be the same objects,
        updated in place). Idempotent: writing the same states twice changes nothing.
        """


class BaseOfflineStore(ABC):
    """Append-only event history per feature-set version, with exactly-once appends."""

    @abstractmethod
    def committed_offsets(
        self, feature_set: FeatureSet, app_id_prefix: str, partitions: Iterable[int]
    ) -> dict[int, int]:
        """Highest Kafka offset already appended per partition (absent: none yet)."""

    @abstractmethod
    def append(
        self,
        feature_set: FeatureSet,
        rows: pa.Table,
        app_id_prefix: str,
        offsets: Mapping[int, int],
    ) -> None:
        """Append ``rows`` and record ``offsets`` (partition -> last offset) in the same commit."""

    @abstractmethod
    def history(
        self,
        feature_set: FeatureSet,
        version: int | None = None,
        columns: Sequence[str] | None = None,
    ) -> pa.Table:
        """Every appended row (optionally as of a table version, only ``columns``)."""

    @abstractmethod
    def history_rows(self, feature_set: FeatureSet, version: int | None = None) -> int:
        """How many rows ``history`` would return, from the table's metadata (no scan)."""

    @abstractmethod
    def history_batches(
        self,
        feature_set: FeatureSet,
        version: int | None = None,
        columns: Sequence[str] | None = None,
        batch_rows: int = 1_000_000,
    ) -> Iterator[pa.RecordBatch]:
        """The rows of ``history`` in batches of at most ``batch_rows``, read as they are
        taken, so a caller holds one batch at a time."""
