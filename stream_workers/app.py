"""The faust application: one agent per source that has feature sets.

The consumer (``stream_workers/transport.py``) hands each fetch of a source topic, as one
list, to that source's agent; the agent gives it to a ``BatchProcessor`` on a thread, so slow
Redis or Delta I/O never blocks faust's event loop and heartbeats, and acknowledges every
message only after both stores were written, so faust commits only what is stored.
Concurrency is 1 per agent: with more, faust can commit an offset past a message still in
flight (faust-streaming issue 606).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import threading
from typing import Any

import faust
from faust.tables import TableManager

from headwater.connectors.catalog import Catalog
from headwater.connectors.errors import StoreFaultError, store_faults
from headwater.connectors.kafka import (
    EventProducer,
    client_config,
)
from headwater.connectors.kafka_groups import committed_offsets, consumer_lag
from headwater.connectors.kafka_security import faust_credentials
from headwater.connectors.offline_delta import DeltaOfflineStore
from headwater.connectors.online_redis import RedisOnlineStore
from headwater.schemas.definitions import Definitions
from headwater.schemas.serialize import definitions_to_dict
from headwater.schemas.settings import Settings
from headwater.stream_workers.erasure_skips import skips_for
from headwater.stream_workers.errors import EventProcessingError, TopicTruncatedError
from headwater.stream_workers.metrics import (
    CONSUMER_LAG,
    SOURCE_PAUSED,
    STORE_FAULTS,
    STORE_UP,
    serve_metrics,
)
from headwater.stream_workers.processor import BatchProcessor
from headwater.stream_workers.processor_factory import processor_from_settings
from headwater.stream_workers.transport import SCHEME, Fetched, batch_routing

__all__ = ["create_app", "reload_requested"]

log = logging.getLogger(__name__)


class TablelessManager(TableManager):
    """faust's table manager without the 1 s it waits at start for tables to be declared:
    Headwater's agents keep no faust tables, and every worker start (restarts included) paid
    that second."""

    async def on_start(self) -> None:
        if not self.should_stop:
            await self._update_channels()
            await self.recovery.start()


def _broker_url(bootstrap_servers: str) -> str:
    return ";".join(f"{SCHEME}://{h.strip()}" for h in bootstrap_servers.split(",") if h.strip())


def create_app(settings: Settings) -> faust.App:
    """The faust App with an agent registered for every source that feeds a feature set."""
    catalog = Catalog(settings.catalog_url)
    defs = catalog.definitions()
    app = faust.App(
        settings.worker.group_id,
        broker=_broker_url(settings.kafka.bootstrap_servers),
        # The same SASL/TLS identity as every other client (derived from client_config).
        broker_credentials=faust_credentials(client_config(settings.kafka)),
        datadir=str(settings.home / "faust"),
        web_enabled=False,
        autodiscover=False,
        consumer_auto_offset_reset="earliest",
        topic_allow_declare=False,
        topic_disable_leader=True,
        broker_commit_interval=1.0,
        # A fetch is one batch for the agent (stream_workers/transport.py).
        broker_max_poll_records=settings.worker.batch_max_events,
        # A crashed worker's partitions move after this long (faust's default is 60 s).
        broker_session_timeout=settings.worker.session_timeout_seconds,
        broker_heartbeat_interval=max(0.5, settings.worker.session_timeout_seconds / 6),
        TableManager=TablelessManager,
    )
    serve_metrics(settings.worker.metrics_port)
    batch_routing(app).max_events = settings.worker.batch_max_events
    batch_routing(app).linger_s = settings.worker.batch_max_seconds
    online = RedisOnlineStore.from_settings(settings.redis)
    # An evicting Redis would delete states silently: refused here (OnlineStoreEvictionError).
    unchecked = online.check_no_eviction()
    if unchecked is not None:
        log.warning("%s", unchecked)
    problem = online.durability_problem()
    if problem is not None:
        log.warning("%s", problem)
    offline = DeltaOfflineStore(settings.offline_location)
    dlq = EventProducer(settings.kafka)
    processors: list[BatchProcessor] = []
    locks: list[asyncio.Lock] = []
    faults = _Faults()
    for source in defs.sources:
        sets = defs.feature_sets_of(source.name)
        if not sets:
            continue
        processor = processor_from_settings(
            settings,
            defs,
            source,
            sets,
            catalog=catalog,
            online=online,
            offline=offline,
            dlq=dlq,
            consuming=True,
        )
        processors.append(processor)
        topic = app.topic(
            source.topic,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            allow_empty=True,
        )
        # The consumer subscribes to the topic and tracks and commits its offsets; its fetches
        # arrive whole, as lists of messages, on the agent's channel (a small bound is the
        # backpressure).
        app.topics.add(topic)
        channel = app.channel(maxsize=1)
        batch_routing(app).channels[source.topic] = channel
        lock = asyncio.Lock()
        app.agent(channel, name=f"headwater.{source.name}", concurrency=1)(
            _agent(app, processor, lock, faults)
        )
        app.timer(interval=settings.worker.reload_check_seconds)(
            _idle_catch_up(app, settings, processor, lock, faults)
        )
        flush_every = min(
            settings.worker.offline_flush_seconds, settings.worker.offline_idle_flush_seconds
        )
        app.timer(interval=max(0.2, flush_every / 2))(
            _flush_timer(processor, lock, settings.worker.offline_flush_seconds, faults)
        )
        locks.append(lock)

    async def _on_assigned(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        # Another worker may have appended to Delta while it held these partitions.
        # (forget_positions drops what it cannot commit; catch-up re-reads it.)
        for processor, lock in zip(processors, locks, strict=True):
            async with lock:
                await asyncio.to_thread(processor.forget_positions)

    async def _on_revoked(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        # Commit buffered Delta rows while this worker still owns the partitions: faust sends
        # this before the group rebalances, so no new owner can have read the old position.
        # (Committing later, on assignment, let a new owner append the same offsets again.)
        for processor, lock in zip(processors, locks, strict=True):
            async with lock:
                try:
                    await asyncio.to_thread(processor.flush)
                except StoreFaultError as exc:
                    # Kept buffered; dropped on assignment if still failing (then re-read).
                    faults.failed(exc, f"{processor.source.name}: committing history on revoke")

    # mode types receivers as sync-or-awaitable with a positional-only sender; ours fit at
    # runtime (mode calls receiver(sender, partitions, signal=...)), the stub is narrower.
    app.on_partitions_revoked.connect(_on_revoked)  # type: ignore[arg-type]
    app.on_partitions_assigned.connect(_on_assigned)  # type: ignore[arg-type]

    async def _flush_on_shutdown(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        # Kafka offsets are already committed here; rows still buffered for Delta go out now
        # (had this failed, the next start's catch-up would re-read them).
        for processor, lock in zip(processors, locks, strict=True):
            async with lock:
                try:
                    await asyncio.to_thread(processor.flush)
                except StoreFaultError as exc:
                    faults.failed(exc, f"{processor.source.name}: committing history at shutdown")

    app.on_before_shutdown.connect(_flush_on_shutdown)  # type: ignore[arg-type]  # see above

    started_with = _fingerprint(defs)

    async def _watch_definitions() -> None:
        # A new feature-set version (or a retired one) changes what the agents compute.
        # Restarting is the simple, safe way to pick it up: SIGTERM makes faust commit what
        # was processed and stop cleanly, then the CLI re-executes the worker.
        try:
            with store_faults("catalog", "reading the definitions"):
                current = await asyncio.to_thread(catalog.definitions)
        except StoreFaultError as exc:
            faults.failed(exc, "watching the definitions")
            return
        if _fingerprint(current) != started_with:
            log.warning("definitions changed in the catalog; restarting the worker to apply them")
            _RELOAD.set()
            os.kill(os.getpid(), signal.SIGTERM)

    app.timer(interval=settings.worker.reload_check_seconds)(_watch_definitions)
    app.timer(interval=settings.worker.reload_check_seconds)(
        _erasure_watcher(catalog, defs, processors, faults)
    )

    return app


def _erasure_watcher(
    catalog: Catalog, defs: Definitions, processors: list[BatchProcessor], faults: _Faults
) -> Any:
    """Loads the catalog's erasure requests into the processors now, and returns a timer
    that reloads them when they change (one small query per tick while they do not).

    ``headwater erase`` waits for a tick to pass before it cleans the stores, so every
    batch processed after the clean-up skips the erased entity's old events.
    """
    seen: tuple[int, int] | None = None

    def load() -> None:
        nonlocal seen
        state = catalog.erasures.state()
        if state == seen:
            return
        records = catalog.erasures.all() if state[0] else []
        for processor in processors:
            # A reference swap: a batch reads the attribute once, before its first event.
            processor.erasures = skips_for(records, processor.source.topic, defs.entities)
        if seen is not None:
            log.warning("erasure requests changed; %d in force", state[0])
        seen = state

    load()

    async def tick() -> None:
        try:
            with store_faults("catalog", "reading the erasure requests"):
                await asyncio.to_thread(load)
        except StoreFaultError as exc:
            faults.failed(exc, "watching the erasure requests")

    return tick


_RELOAD = threading.Event()


def reload_requested() -> bool:
    """Whether the worker stopped because the catalog's definitions changed."""
    return _RELOAD.is_set()


def _fingerprint(defs: Definitions) -> str:
    return json.dumps(definitions_to_dict(defs), sort_keys=True)


def _idle_catch_up(
    app: faust.App,
    settings: Settings,
    processor: BatchProcessor,
    lock: asyncio.Lock,
    faults: _Faults,
) -> Any:
    """A timer that catches up lagging versions even when no new event arrives.

    Versions behind the group's committed position (a new version on a quiet topic) would
    otherwise wait for the next event. Only partitions assigned to this worker are touched,
    under the agent's lock, so it never races the agent or another worker.
    """
    topic = processor.source.topic

    async def tick() -> None:
        assigned = sorted(tp.partition for tp in app.consumer.assignment() if tp.topic == topic)
        if not assigned:
            return
        try:
            with store_faults("kafka", f"reading the group's offsets of {topic}"):
                committed = await asyncio.to_thread(
                    committed_offsets, settings.kafka, settings.worker.group_id, topic
                )
                lag = await asyncio.to_thread(
                    consumer_lag, settings.kafka, settings.worker.group_id, topic, committed
                )
            CONSUMER_LAG.labels(processor.source.name).set(lag)
            async with lock:
                # A topic replaced while the worker is idle is a new epoch before the next
                # batch arrives (its first offsets could otherwise look like a continuation).
                await asyncio.to_thread(processor.verify_topic, assigned)
                for partition in assigned:
                    end = committed.get(partition, -1)
                    if end > 0:
                        done = await asyncio.to_thread(processor.catch_up, partition, end)
                        if done:
                            log.info("%s[%d]: caught up %s", topic, partition, done)
        except StoreFaultError as exc:
            faults.failed(exc, f"{processor.source.name}: catching up")
        except TopicTruncatedError as exc:
            faults.truncated(processor.source.name, exc)
        except Exception:
            log.exception("%s: catching up failed; the next tick tries again", topic)

    return tick


def _flush_timer(
    processor: BatchProcessor, lock: asyncio.Lock, flush_seconds: float, faults: _Faults
) -> Any:
    """Commits offline rows that waited ``flush_seconds``, also when no new batch arrives."""

    async def tick() -> None:
        async with lock:
            try:
                await asyncio.to_thread(processor.flush, older_than_s=flush_seconds)
            except StoreFaultError as exc:
                # The rows stay buffered; the agent's next batch (or this timer) retries.
                faults.failed(exc, f"{processor.source.name}: committing history")

    return tick


class _Faults:
    """Fault bookkeeping of one worker: metrics, and one log line per fault episode (a store
    down, a source stopped) rather than one per retry."""

    def __init__(self) -> None:
        self.failing: set[str] = set()
        self.paused: set[str] = set()

    def failed(self, exc: StoreFaultError, what: str) -> None:
        STORE_FAULTS.labels(exc.store).inc()
        STORE_UP.labels(exc.store).set(0)
        if exc.store not in self.failing:
            log.error(
                "%s: %s is failing (%s); retrying with backoff, nothing is lost or dead-lettered",
                what,
                exc.store,
                exc,
            )
        self.failing.add(exc.store)

    def truncated(self, source: str, exc: TopicTruncatedError) -> None:
        """A source stopped on a log that lost its end: one CRITICAL line, then quiet."""
        if source not in self.paused:
            log.critical("headwater worker: %s", exc)
            self.paused.add(source)
        SOURCE_PAUSED.labels(source).set(1)

    def resumed(self, source: str) -> None:
        self.paused.discard(source)
        SOURCE_PAUSED.labels(source).set(0)

    def recovered(self) -> None:
        for store in self.failing:
            log.warning("%s is back; carrying on", store)
            STORE_UP.labels(store).set(1)
        self.failing.clear()


_BACKOFF_FIRST_S = 0.5
_BACKOFF_MAX_S = 30.0
_TRUNCATED_RETRY_S = 5.0


async def _still_ours_after(app: faust.App, fetched: Fetched, delay_s: float) -> bool:
    """Wait ``delay_s`` before retrying a batch; ``False`` (and the batch dropped, not
    acknowledged) when a rebalance gave its partitions away meanwhile: their new owner
    reads it again from the committed offsets."""
    await asyncio.sleep(delay_s)
    if app.consumer.still_owned(fetched):  # type: ignore[attr-defined]
        return True
    app.consumer.drop_batch(fetched)  # type: ignore[attr-defined]
    return False


def _agent(app: faust.App, processor: BatchProcessor, lock: asyncio.Lock, faults: _Faults) -> Any:
    source = processor.source.name

    async def process(stream: faust.StreamT[Fetched]) -> None:
        async for fetched in stream:
            # A batch fetched before a rebalance may hold partitions that moved: it is left
            # to their new owner; one taken is tracked until acknowledged below.
            records = app.consumer.take_batch(fetched)  # type: ignore[attr-defined]
            if not records:
                continue
            backoff = _BACKOFF_FIRST_S
            while True:
                try:
                    async with lock:
                        result = await asyncio.to_thread(processor.process, records)
                except StoreFaultError as exc:
                    # A store is down or slow: nothing of the batch is lost (nothing was
                    # acknowledged) and retrying it is exact, so wait and retry, however long
                    # the outage lasts.
                    faults.failed(exc, f"{source}: a batch of {len(records)} events")
                    delay, backoff = backoff, min(backoff * 2, _BACKOFF_MAX_S)
                    if await _still_ours_after(app, fetched, delay):
                        continue
                    break
                except TopicTruncatedError as exc:
                    # Positions past the end of the log: skipping would lose the new events
                    # silently. Stop here, loudly, once; try again now and then, so that a
                    # `headwater reset-epoch` (or a recreated topic) lets it go on.
                    faults.truncated(source, exc)
                    if await _still_ours_after(app, fetched, _TRUNCATED_RETRY_S):
                        continue
                    break
                except Exception as exc:
                    # A processing error with worker.on_processing_error = stop, or a fault in
                    # Headwater itself. Exiting would replay the same batch on every restart
                    # (a crash loop), so this source stops here, loudly, while the process
                    # stays up; nothing past the batch is acknowledged.
                    SOURCE_PAUSED.labels(source).set(1)
                    log.critical(
                        "headwater worker: source %s stopped at a batch of %d events: %s: %s",
                        source,
                        len(records),
                        type(exc).__name__,
                        exc,
                        exc_info=not isinstance(exc, EventProcessingError),
                    )
                    await asyncio.Event().wait()  # until the worker is stopped
                    return
                faults.recovered()
                faults.resumed(source)
                # Both stores have the batch: now faust may commit these offsets.
                app.consumer.ack_batch(fetched)  # type: ignore[attr-defined]
                log.info(
                    "%s: %d events applied, %s dead-lettered",
                    source,
                    result.accepted,
                    result.dead_lettered or 0,
                )
                break

    return process
