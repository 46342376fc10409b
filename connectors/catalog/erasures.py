"""Right-to-erasure requests (``hw_erasures``): which entity key, when, by whom, and where each
source topic's log ended at that moment.

The request is the rule the stream workers follow from then on: an event of the erased key
at an offset below the recorded end of its partition is skipped (a replay of the raw topic,
a catch-up, a new feature-set version computed from the topic's history), while an event
produced after the erasure is a new event and is processed. Recording the request and its
audit entry happen in one transaction, so a request exists exactly when it is audited.

``detail`` (JSON) holds ``topics``: ``{topic: {"topic_id": ..., "ends": {partition: end}}}``,
then, once the stores are cleaned, ``removed`` (what was deleted), ``retention_hours``,
``vacuum_after_ms`` and, after ``headwater erase --vacuum``, ``vacuumed_at_ms``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from headwater.connectors.catalog.audit import audit_row, current_actor
from headwater.connectors.catalog.records import CatalogError
from headwater.connectors.catalog.tables import erasures as _erasures

__all__ = ["ErasureRecord", "Erasures", "TopicEnd"]


@dataclass(frozen=True)
class TopicEnd:
    """Where a source topic's log ended when an erasure was recorded."""

    topic_id: str
    """The Kafka topic id (offsets only mean something within one topic id)."""
    ends: Mapping[int, int]
    """Per partition, the offset the next event would get: events below it are erased."""


@dataclass(frozen=True)
class ErasureRecord:
    id: int
    entity: str
    entity_key: tuple[str, ...]
    """The key's field values as text, in the order of the entity's ``keys``."""
    requested_at_ms: int
    actor: str
    detail: dict[str, Any]

    @property
    def topics(self) -> dict[str, TopicEnd]:
        """The recorded log ends per source topic."""
        return {
            topic: TopicEnd(
                str(body.get("topic_id", "")),
                {int(p): int(o) for p, o in body.get("ends", {}).items()},
            )
            for topic, body in self.detail.get("topics", {}).items()
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "entity": self.entity,
            "entity_key": list(self.entity_key),
            "requested_at_ms": self.requested_at_ms,
            "actor": self.actor,
            "detail": self.detail,
        }


def _target(entity: str, key: Sequence[str]) -> str:
    return f"{entity}:{json.dumps(list(key))}"


class Erasures:
    """The erasure requests of one catalog database (``Catalog.erasures``)."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine

    def record(
        self, entity: str, key: Sequence[str], topics: Mapping[str, TopicEnd]
    ) -> ErasureRecord:
        """Record a request with the topics' log ends, and its ``erase`` audit entry, in one
        transaction; from its commit on, workers skip the key's events below those ends."""
        now = time.time_ns() // 1_000_000
        detail: dict[str, Any] = {
            "topics": {
                topic: {
                    "topic_id": end.topic_id,
                    "ends": {str(p): o for p, o in sorted(end.ends.items())},
                }
                for topic, end in sorted(topics.items())
            }
        }
        actor = current_actor()[:255]
        text = json.dumps(list(key))
        with self._engine.begin() as conn:
            result = conn.execute(
                sa.insert(_erasures).values(
                    entity=entity,
                    entity_key=text,
                    requested_at_ms=now,
                    actor=actor,
                    detail=json.dumps(detail, sort_keys=True),
                )
            )
            erasure_id = int(result.inserted_primary_key[0])  # type: ignore[index]  # one-column key
            conn.execute(
                audit_row("erase", _target(entity, key), {"erasure": erasure_id, **detail})
            )
        return ErasureRecord(erasure_id, entity, tuple(key), now, actor, detail)

    def update(self, erasure_id: int, changes: Mapping[str, Any]) -> ErasureRecord:
        """Merge ``changes`` into a request's ``detail`` (what was removed, the vacuum)."""
        with self._engine.begin() as conn:
            row = conn.execute(sa.select(_erasures).where(_erasures.c.id == erasure_id)).first()
            if row is None:
                msg = f"no erasure request with id {erasure_id}"
                raise CatalogError(msg)
            detail = {**json.loads(row.detail), **changes}
            conn.execute(
                sa.update(_erasures)
                .where(_erasures.c.id == erasure_id)
                .values(detail=json.dumps(detail, sort_keys=True, default=str))
            )
        return ErasureRecord(
            row.id,
            row.entity,
            tuple(json.loads(row.entity_key)),
            row.requested_at_ms,
            row.actor,
            detail,
        )

    def failed(self, entity: str, key: Sequence[str], detail: Mapping[str, Any]) -> None:
        """Audit an erasure that could not complete (``outcome`` ``failed``)."""
        with self._engine.begin() as conn:
            conn.execute(audit_row("erase", _target(entity, key), detail, outcome="failed"))

    def audit(self, action: str, target: str, detail: Mapping[str, Any]) -> None:
        """Audit a follow-up of erasures (``erase_vacuum``)."""
        with self._engine.begin() as conn:
            conn.execute(audit_row(action, target, detail))

    def all(self) -> list[ErasureRecord]:
        """Every request, oldest first."""
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(_erasures).order_by(_erasures.c.id)).all()
        return [
            ErasureRecord(
                r.id,
                r.entity,
                tuple(json.loads(r.entity_key)),
                r.requested_at_ms,
                r.actor,
                json.loads(r.detail),
            )
            for r in rows
        ]

    def state(self) -> tuple[int, int]:
        """``(count, newest id)``: one small query that tells a worker whether to re-read."""
        with self._engine.connect() as conn:
            count, newest = conn.execute(
                sa.select(sa.func.count(), sa.func.coalesce(sa.func.max(_erasures.c.id), 0))
            ).one()
        return int(count), int(newest)
