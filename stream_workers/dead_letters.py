"""Events a batch cannot use, sent to the source's DLQ topic with the reason, once.

Kept apart from the batch's orchestration (``stream_workers/processor.py``): the letters
are the one write of a batch that must go out first (before any offset past a bad event can
be committed), and the one that must not repeat when the batch is replayed. The letter's
headers are the contract ``connectors/dlq.py`` reads back (``headwater dlq``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from headwater.connectors.errors import store_faults
from headwater.connectors.kafka import EventProducer, KafkaRecord
from headwater.schemas.definitions import Source
from headwater.schemas.errors import EventError
from headwater.schemas.tiles import FeatureSetPlan

__all__ = ["DeadLetters"]

log = logging.getLogger(__name__)


class DeadLetters:
    """Sends the bad events of one source to its DLQ topic.

    Args:
        dlq: the producer; ``None`` counts the letters without sending them (replays).
        position: a version's position in a partition (the last offset it handled).
    """

    def __init__(
        self,
        source: Source,
        dlq: EventProducer | None,
        position: Callable[[FeatureSetPlan, int], int],
    ) -> None:
        self.source = source
        self._dlq = dlq
        self._position = position

    def send(
        self, plans: Sequence[FeatureSetPlan], bad: Sequence[tuple[KafkaRecord, EventError]]
    ) -> dict[str, int]:
        """Send bad events to the DLQ, except those every version already handled (a retry
        or a replay after a crash: their letters went out the first time); returns the
        letters sent per reason.

        Raises:
            StoreFaultError: Kafka failed; sending the batch's letters again is exact.
        """
        handled = {
            p: min(self._position(plan, p) for plan in plans) for p in {m.partition for m, _ in bad}
        }
        sent: dict[str, int] = {}
        for msg, error in bad:
            if msg.offset > handled[msg.partition]:
                self._send_one(msg, error)
                sent[error.reason] = sent.get(error.reason, 0) + 1
        if sent and self._dlq is not None:
            with store_faults("kafka", f"sending dead letters to {self.source.dlq_topic}"):
                self._dlq.flush()
            log.warning("%s: dead-lettered %s", self.source.name, sent)
        return sent

    def _send_one(self, msg: KafkaRecord, exc: EventError) -> None:
        headers = {
            "hw.reason": exc.reason.encode(),
            "hw.error": str(exc).encode()[:4000],
            "hw.error_class": type(exc).__name__.encode(),
            "hw.field": (exc.field or "").encode(),
            "hw.source_topic": self.source.topic.encode(),
            "hw.partition": str(msg.partition).encode(),
            "hw.offset": str(msg.offset).encode(),
        }
        if self._dlq is not None:
            with store_faults("kafka", f"sending a dead letter to {self.source.dlq_topic}"):
                self._dlq.produce(
                    self.source.dlq_topic, msg.value or b"", msg.key, headers, msg.timestamp
                )
