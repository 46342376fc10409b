"""Which events of a source a worker skips because their entity was erased.

An erasure (``connectors/catalog/erasures.py``) recorded each source topic's log end per
partition. From then on, an event of the erased key at an offset below that end is skipped
by every processing path (the stream, a catch-up, a new version computed from the topic's
history): it reaches neither Redis nor Delta nor the dead-letter topic, and is only counted.
An event at or past the end was produced after the erasure: it is new data about that id,
processed like any other (erasure removes what was known, it does not block the id forever).

Cost: a processor without erasures holds ``None`` and pays one ``is None`` test per
message. With erasures, a message at or past the highest recorded end of its partition (every
live event) pays one integer comparison; only replayed messages below it get their key
computed and looked up.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from headwater.connectors.catalog import ErasureRecord
from headwater.schemas.definitions import KEY_SEPARATOR, Entity
from headwater.schemas.tiles import TopicEpoch

__all__ = ["ErasureSkips", "applicable", "skips_for"]


@dataclass(frozen=True)
class _EntitySkips:
    entity: Entity
    ends: Mapping[tuple[str, ...], Mapping[int, int]]
    """Per erased key, the end offset of each partition (the largest over its requests)."""
    message_keys: Mapping[bytes, Mapping[int, int]]
    """The same, by Kafka message key (the joined entity key), for events that cannot be
    decoded: a bad event of an erased entity is not sent to the dead-letter topic again."""


class ErasureSkips:
    """The erasures that apply to one source topic (immutable; a worker swaps in a new one)."""

    def __init__(self, topic_id: str, entities: Sequence[_EntitySkips]) -> None:
        self.topic_id = topic_id
        """The topic id the offsets belong to: a recreated topic numbers its events anew,
        and the erasure's offsets say nothing about them."""
        self._entities = tuple(entities)
        highest: dict[int, int] = {}
        for skips in self._entities:
            for ends in skips.ends.values():
                for partition, end in ends.items():
                    highest[partition] = max(highest.get(partition, 0), end)
        self._highest = highest

    def erased(self, partition: int, offset: int, record: Mapping[str, Any]) -> bool:
        """Whether the decoded event at ``partition``/``offset`` belongs to an erasure."""
        if offset >= self._highest.get(partition, 0):
            return False
        for skips in self._entities:
            ends = skips.ends.get(skips.entity.key_of(record))
            if ends is not None and offset < ends.get(partition, 0):
                return True
        return False

    def erased_message(self, partition: int, offset: int, key: bytes | None) -> bool:
        """Whether an undecodable message belongs to an erasure, by its Kafka key."""
        if key is None or offset >= self._highest.get(partition, 0):
            return False
        for skips in self._entities:
            ends = skips.message_keys.get(key)
            if ends is not None and offset < ends.get(partition, 0):
                return True
        return False


def skips_for(
    records: Sequence[ErasureRecord], topic: str, entities: Sequence[Entity]
) -> ErasureSkips | None:
    """The skips of ``topic`` (events of ``entities``) from the erasure ``records``; ``None``
    when none applies, so that the processor's check costs nothing.

    Requests recorded under different topic ids of ``topic`` (it was recreated meanwhile):
    only those of the newest id apply, the others' offsets describe a log that is gone.
    """
    by_name = {e.name: e for e in entities}
    relevant = [(r, r.topics[topic]) for r in records if r.entity in by_name and topic in r.topics]
    if not relevant:
        return None
    topic_id = relevant[-1][1].topic_id
    ends: dict[str, dict[tuple[str, ...], dict[int, int]]] = {}
    for record, end in relevant:
        if end.topic_id != topic_id:
            continue
        per_key = ends.setdefault(record.entity, {}).setdefault(record.entity_key, {})
        for partition, offset in end.ends.items():
            per_key[partition] = max(per_key.get(partition, 0), offset)
    return ErasureSkips(
        topic_id,
        [
            _EntitySkips(
                by_name[name],
                keys,
                {KEY_SEPARATOR.join(key).encode(): e for key, e in keys.items()},
            )
            for name, keys in ends.items()
        ],
    )


def applicable(skips: ErasureSkips | None, epoch: TopicEpoch | None) -> ErasureSkips | None:
    """``skips``, unless the topic was recreated since they were recorded (``epoch`` has
    another topic id): their offsets describe a log that is gone."""
    if skips is None or epoch is None or epoch.name.split("~")[0] == skips.topic_id:
        return skips
    return None
