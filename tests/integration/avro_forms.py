"""A private source with a schema of the test's choosing, inside a ``deployment``.

``define(schema, features)`` writes an entity ``account_<s>`` keyed by ``account_id``, a
source ``forms_<s>`` on ``raw.forms_<s>`` (event time in ``event_time``) and a feature set
``forms_<s>``, applies them, and removes exactly those topics and Redis keys afterwards.
Events are produced the way a real producer does: confluent-kafka's ``AvroSerializer``
against the deployment's ``/registry``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
import redis
import yaml
from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from headwater.apply import apply_definitions
from headwater.connectors.kafka import delete_topics
from headwater.connectors.offline_delta import DeltaOfflineStore
from headwater.processes import HeadwaterProcess, wait_caught_up
from headwater.schemas.definitions import FeatureSet
from tests.integration.pipeline import Deployment

__all__ = ["FormsSource", "forms_source"]


@dataclass
class FormsSource:
    deployment: Deployment
    suffix: str
    schema: Mapping[str, Any]

    @property
    def source(self) -> str:
        return f"forms_{self.suffix}"

    @property
    def topic(self) -> str:
        return f"raw.forms_{self.suffix}"

    @property
    def feature_set_name(self) -> str:
        return f"forms_{self.suffix}"

    def feature_set(self) -> FeatureSet:
        return self.deployment.definitions().feature_set(self.feature_set_name)

    def refs(self) -> list[str]:
        fs = self.feature_set()
        return [f"{fs.name}:{f.name}" for f in fs.features]

    def produce(self, registry_url: str, records: Sequence[Mapping[str, Any]]) -> None:
        """Send ``records`` in order with a stock ``AvroSerializer`` (keyed by account)."""
        settings = self.deployment.settings
        producer = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers, "log_level": 4})
        errors: list[Any] = []
        with SchemaRegistryClient({"url": registry_url}) as client:
            serializer = AvroSerializer(client, json.dumps(self.schema))
            for record in records:
                value = serializer(
                    dict(record), SerializationContext(self.topic, MessageField.VALUE)
                )
                producer.produce(
                    self.topic,
                    key=str(record["account_id"]).encode(),
                    value=value,
                    on_delivery=lambda err, _msg: errors.append(err),
                )
        assert producer.flush(30) == 0
        assert errors == [None] * len(records), errors

    def wait(self, worker: HeadwaterProcess, timeout_s: float = 120) -> None:
        settings = self.deployment.settings
        wait_caught_up(
            settings.kafka,
            settings.worker.group_id,
            self.topic,
            worker,
            timeout_s,
            offline=(DeltaOfflineStore(settings.offline_root), [self.feature_set()]),
        )


@pytest.fixture
def forms_source(
    deployment: Deployment,
) -> Iterator[Callable[..., FormsSource]]:
    """A factory ``define(schema, features, filter=None, transforms=None)``."""
    made: list[FormsSource] = []

    def define(
        schema: Mapping[str, Any],
        features: Sequence[Mapping[str, Any]],
        *,
        filter: str | None = None,
        transforms: Mapping[str, str] | None = None,
        resolution: str = "1m",
    ) -> FormsSource:
        suffix = f"{deployment.suffix}_{uuid.uuid4().hex[:6]}"
        directory = deployment.defs_dir / f"forms_{suffix}"
        directory.mkdir(parents=True)
        (directory / "forms.avsc").write_text(json.dumps(schema, indent=1))
        feature_set: dict[str, Any] = {
            "name": f"forms_{suffix}",
            "entity": f"account_{suffix}",
            "source": f"forms_{suffix}",
            "resolution": resolution,
            "features": [dict(f) for f in features],
        }
        if filter is not None:
            feature_set["filter"] = filter
        if transforms:
            feature_set["transforms"] = dict(transforms)
        doc = {
            "entities": [{"name": f"account_{suffix}", "keys": ["account_id"]}],
            "sources": [
                {
                    "name": f"forms_{suffix}",
                    "topic": f"raw.forms_{suffix}",
                    "schema": "forms.avsc",
                    "timestamp": "event_time",
                }
            ],
            "feature_sets": [feature_set],
        }
        (directory / "features.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
        apply_definitions(deployment.settings, deployment.defs_dir)
        made.append(FormsSource(deployment, suffix, schema))
        return made[-1]

    try:
        yield define
    finally:
        settings = deployment.settings
        # A running worker would re-create the topics it consumes as they are deleted.
        for process in deployment.processes:
            process.stop()
        for forms in made:
            delete_topics(settings.kafka, [forms.topic, f"dlq.{forms.source}"])
            client = redis.Redis.from_url(settings.redis.url)
            keys = list(client.scan_iter(match=f"hw:{forms.feature_set_name}:*", count=1000))
            if keys:
                client.delete(*keys)
            client.close()
