"""The one place where a deployment's settings become the arguments of a ``BatchProcessor``.

The stream worker (``stream_workers/app.py``) and ``rebuild-online``
(``stream_workers/rebuild.py``) must build their processors alike: the same writer id (the
consumer group, which names the Delta app transactions holding each version's positions),
the same entities and the same bound on event times, or the rebuild would not fold the
history as the stream folded it. What only a process consuming the topic needs (catching up
from Kafka, the topic's epochs and log ends, the worker's flush and error policies) is added
for the worker alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

from headwater.connectors.base import BaseOfflineStore, BaseOnlineStore
from headwater.connectors.catalog import Catalog
from headwater.connectors.kafka import EventProducer, log_ends, read_range
from headwater.connectors.topic_epochs import current_epoch
from headwater.schemas.definitions import Definitions, FeatureSet, Source
from headwater.schemas.settings import Settings
from headwater.stream_workers.processor import BatchProcessor

__all__ = ["processor_from_settings"]


def processor_from_settings(
    settings: Settings,
    defs: Definitions,
    source: Source,
    feature_sets: Sequence[FeatureSet],
    *,
    catalog: Catalog,
    online: BaseOnlineStore,
    offline: BaseOfflineStore,
    dlq: EventProducer | None,
    consuming: bool = False,
    **options: Any,
) -> BatchProcessor:
    """The processor of ``feature_sets`` (versions over ``source``) for the deployment of
    ``settings``.

    Args:
        consuming: the processor consumes the source topic (the worker): it catches up from
            Kafka, follows the topic's epochs and log ends, and commits Delta and handles an
            unforeseen event failure as ``settings.worker`` says.
        options: further ``BatchProcessor`` arguments, which win over those above (e.g.
            ``state_cache_entities=0`` for a rebuild).
    """
    arguments: dict[str, Any] = {"native_decoding": settings.worker.native_decoding}
    if consuming:
        worker = settings.worker
        arguments.update(
            offline_flush_rows=worker.offline_flush_rows,
            offline_flush_seconds=worker.offline_flush_seconds,
            offline_idle_flush_seconds=worker.offline_idle_flush_seconds,
            stop_on_processing_error=worker.on_processing_error == "stop",
            topic_epoch=partial(current_epoch, settings.kafka, catalog, source.topic),
            log_ends=partial(log_ends, settings.kafka, source.topic),
            read_range=partial(
                read_range, settings.kafka, source.topic, batch_size=worker.batch_max_events
            ),
        )
    arguments.update(options)
    return BatchProcessor(
        source=source,
        feature_sets=feature_sets,
        entities=defs.entities,
        catalog=catalog,
        online=online,
        offline=offline,
        dlq=dlq,
        writer_id=settings.worker.group_id,
        max_future_skew_ms=settings.max_future_skew_ms,
        **arguments,
    )
