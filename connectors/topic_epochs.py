"""The identity of a source topic that stored positions refer to (DESIGN §8).

Kafka offsets say where an event is in a topic, not which topic: a topic deleted and created
again under the same name (or a cluster rebuilt without its data, as ``docker compose down``
without a Kafka volume does) numbers its events from 0 again. Stored positions (Delta app
transactions, the offsets in each Redis entity state) therefore carry the topic's epoch:
its Kafka topic id (KIP-516), plus a generation after ``headwater reset-epoch``. A new topic
id is a new epoch by itself, with every event of the new topic applied. A log that lost its
end under the same id (stored positions past the log's end) is stopped on, and
``reset-epoch`` starts a new epoch at the log's current end once someone has looked.
"""

from __future__ import annotations

from headwater.connectors.catalog import Catalog
from headwater.connectors.kafka import log_ends, topic_id
from headwater.schemas.settings import KafkaSettings
from headwater.schemas.tiles import TopicEpoch

__all__ = ["current_epoch", "positions_prefix", "reset_epoch"]


def current_epoch(kafka: KafkaSettings, catalog: Catalog | None, topic: str) -> TopicEpoch:
    """The epoch of ``topic`` now: its topic id, with the generation of the last reset of
    that same topic id, if any (a reset of an older topic id no longer applies).

    Raises:
        KafkaUnavailableError: the broker did not answer or the topic does not exist.
    """
    tid = topic_id(kafka, topic)
    reset = catalog.topic_epoch(topic) if catalog is not None else None
    if reset is not None and reset[0] == tid:
        return TopicEpoch(f"{tid}~{reset[1]}", reset[2])
    return TopicEpoch(tid)


def positions_prefix(writer_id: str, epoch: TopicEpoch) -> str:
    """The prefix of a writer's Delta app transactions in ``epoch`` (``<prefix>:<partition>``)."""
    return f"{writer_id}:{epoch.name}"


def reset_epoch(kafka: KafkaSettings, catalog: Catalog, topic: str) -> TopicEpoch:
    """Start a new epoch of ``topic`` at the current end of its log: the events in it now
    count as applied, every later one is new. For a log that lost its end under the same
    topic id, once the events it lost are known to be only those (see README)."""
    tid = topic_id(kafka, topic)
    start = {p: end - 1 for p, end in log_ends(kafka, topic).items()}
    catalog.reset_topic_epoch(topic, tid, start)
    return current_epoch(kafka, catalog, topic)
