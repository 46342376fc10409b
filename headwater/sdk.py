"""The notebook front door: ``from headwater import FeatureStore``.

One object over the same settings, catalog and stores the CLI and the API use, so a notebook
sees exactly what ``apply`` registered and what the workers computed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal, Self, overload

import pyarrow as pa

from headwater.connectors.catalog import Catalog
from headwater.connectors.offline_delta import DeltaOfflineStore
from headwater.connectors.online_redis import RedisOnlineStore
from headwater.schemas.avro import event_time_ms
from headwater.schemas.errors import EventError
from headwater.schemas.settings import Settings, load_settings
from headwater.serving.errors import BadRequestError
from headwater.serving.features import resolve_features
from headwater.serving.historical import labels_from_history
from headwater.serving.online import OnlineResult, lookup
from headwater.serving.training_sets import AsOf, rebuild, retrieve

__all__ = ["FeatureStore", "to_arrow"]


def to_arrow(frame: Any) -> pa.Table:
    """A pyarrow Table from a pyarrow Table, a pandas DataFrame or a polars DataFrame.

    Raises:
        TypeError: naming the type received and the accepted ones.
    """
    if isinstance(frame, pa.Table):
        return frame
    module = type(frame).__module__.split(".")[0]
    if module == "pandas":
        return pa.Table.from_pandas(frame, preserve_index=False)
    if module == "polars":
        return frame.to_arrow()
    msg = f"expected a pyarrow.Table, pandas.DataFrame or polars.DataFrame, got {type(frame).__name__}"
    raise TypeError(msg)


class FeatureStore:
    """Headwater from Python.

    Args:
        settings: defaults to the same ``HEADWATER_*`` variables and ``headwater.yaml`` the
            CLI reads.
    """

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or load_settings()
        self.catalog = Catalog(self.settings.catalog_url)
        self._online: RedisOnlineStore | None = None
        self.offline = DeltaOfflineStore(self.settings.offline_location)

    @property
    def online(self) -> RedisOnlineStore:
        if self._online is None:
            self._online = RedisOnlineStore.from_settings(self.settings.redis)
        return self._online

    def close(self) -> None:
        if self._online is not None:
            self._online.close()
        self.catalog.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get_online_features(
        self,
        entities: Mapping[str, Sequence[Any]],
        features: Sequence[str] | None = None,
        *,
        feature_service: str | None = None,
        request: Mapping[str, Sequence[Any]] | None = None,
    ) -> OnlineResult:
        """Values and statuses per entity, computed at the moment served (``served_at_ms``).

        ``request``: the fields request-time features read, one value per entity row
        (``{"amount": [12.5, 3.0]}``), as in the HTTP body.
        """
        resolved = resolve_features(self.catalog.definitions(), features, feature_service)
        body = None if request is None else {k: list(v) for k, v in request.items()}
        return lookup(self.online, resolved, entities, body)

    def ingest(self, frame: Any, *, source: str) -> int:
        """Produce a data frame's rows to ``source``'s topic, the same path as every other
        ingestion; returns the count once Kafka acknowledged all of them.

        Raises:
            BadRowError: a row does not fit the source schema (nothing was produced).
        """
        from headwater.ingest import Ingestor

        ingestor = Ingestor.for_source(self.settings, source, show_progress=False)
        return ingestor.ingest_table(to_arrow(frame)).produced

    @overload
    def get_historical_features(
        self,
        entity_df: Any = ...,
        features: Sequence[str] | None = ...,
        *,
        feature_service: str | None = ...,
        timestamp_column: str = ...,
        start: datetime | int | None = ...,
        end: datetime | int | None = ...,
        at: datetime | int | None = ...,
        as_of: AsOf = ...,
        save_as: str | None = ...,
        output: Literal["arrow"] = ...,
    ) -> pa.Table: ...

    @overload
    def get_historical_features(
        self,
        entity_df: Any = ...,
        features: Sequence[str] | None = ...,
        *,
        feature_service: str | None = ...,
        timestamp_column: str = ...,
        start: datetime | int | None = ...,
        end: datetime | int | None = ...,
        at: datetime | int | None = ...,
        as_of: AsOf = ...,
        save_as: str | None = ...,
        output: Literal["pandas", "polars"],
    ) -> Any: ...

    def get_historical_features(
        self,
        entity_df: Any = None,
        features: Sequence[str] | None = None,
        *,
        feature_service: str | None = None,
        timestamp_column: str = "event_timestamp",
        start: datetime | int | None = None,
        end: datetime | int | None = None,
        at: datetime | int | None = None,
        as_of: AsOf = None,
        save_as: str | None = None,
        output: Literal["arrow", "pandas", "polars"] = "arrow",
    ) -> Any:
        """A point-in-time training set: ``entity_df``'s rows, in order, with features added.

        ``entity_df`` (pyarrow, pandas or polars) holds the entity key columns and the label
        time in ``timestamp_column`` (epoch ms or tz-aware timestamps), and a column per
        request field that requested request-time features read (named like the field).
        No row is dropped.
        Without ``entity_df``: ``start``/``end`` give each entity's values as of each of its
        events in ``[start, end)`` (its feature history), ``at`` a snapshot of every entity
        seen by then (times tz-aware or epoch ms).
        ``as_of`` reads the tables as they were at a time (or at given Delta versions);
        ``save_as`` records the retrieval in the catalog so ``rebuild_training_set`` can
        reproduce it byte for byte.
        """
        resolved = resolve_features(self.catalog.definitions(), features, feature_service)
        if entity_df is None:
            entity_table = labels_from_history(
                self.offline,
                resolved,
                start_ms=_epoch_ms(start, "start"),
                end_ms=_epoch_ms(end, "end"),
                at_ms=_epoch_ms(at, "at"),
                timestamp_column=timestamp_column,
            )
        elif start is not None or end is not None or at is not None:
            msg = "give an entity frame or start=/end=/at=, not both"
            raise BadRequestError(msg)
        else:
            entity_table = to_arrow(entity_df)
        table = retrieve(
            self.offline,
            self.catalog,
            resolved,
            entity_table,
            timestamp_column=timestamp_column,
            as_of=as_of,
            save_as=save_as,
        )
        return _convert(table, output)

    def rebuild_training_set(
        self, name: str, *, output: Literal["arrow", "pandas", "polars"] = "arrow"
    ) -> Any:
        """The training set saved as ``name``, identical to when it was saved."""
        return _convert(rebuild(self.offline, self.catalog, name), output)


def _epoch_ms(value: datetime | int | None, name: str) -> int | None:
    try:
        return None if value is None else event_time_ms(value, name)
    except EventError as exc:
        raise BadRequestError(str(exc)) from exc


def _convert(table: pa.Table, output: str) -> Any:
    if output == "pandas":
        return table.to_pandas()
    if output == "polars":
        import polars as pl

        return pl.from_arrow(table)
    return table
