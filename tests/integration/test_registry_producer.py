"""A stock confluent-kafka producer with ``AvroSerializer`` against our ``/registry``.

The registry runs in a real uvicorn server; records go through a real broker and come back
decoded both by Headwater's own wire-format code (with the schema the catalog holds for the id
in the message) and by confluent-kafka's ``AvroDeserializer`` against the same registry.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from confluent_kafka import Consumer, Message, Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext
from fastapi import FastAPI

from headwater.connectors.catalog import Catalog
from headwater.connectors.kafka import delete_topics, ensure_topics
from headwater.schemas.avro import decode_wire, split_wire
from headwater.schemas.settings import KafkaSettings
from headwater.serving.registry import registry_router
from tests.integration.services import free_ports

pytestmark = pytest.mark.integration

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "examples" / "transactions.avsc"
RECORDS: list[dict[str, Any]] = [
    {
        "transaction_id": f"t{i}",
        "user_id": f"u{i % 2}",
        "merchant_id": "m1",
        "amount": 10.5 * (i + 1),
        "currency": "EUR",
        "status": "approved" if i else "declined",
        "event_time": 1_790_000_000_000 + i * 1000,
    }
    for i in range(3)
]


@dataclass
class Registry:
    url: str
    catalog: Catalog
    paths: list[tuple[str, str, int]]
    """(method, path, status) of every request the server answered."""


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    """A uvicorn server on a free port with the registry under ``/registry``."""
    catalog = Catalog("sqlite:///" + str(tmp_path / "catalog.db"))
    app = FastAPI()
    app.include_router(registry_router(catalog))
    seen: list[tuple[str, str, int]] = []

    @app.middleware("http")
    async def record(request: Any, call_next: Any) -> Any:
        response = await call_next(request)
        seen.append((request.method, request.url.path, response.status_code))
        return response

    (port,) = free_ports(1)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="registry-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive(), "uvicorn stopped before it started (port taken?)"
        assert time.monotonic() < deadline, "uvicorn did not start within 20 s"
        time.sleep(0.05)
    try:
        yield Registry(f"http://127.0.0.1:{port}/registry", catalog, seen)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        catalog.close()
    assert not thread.is_alive(), "uvicorn did not stop"


@pytest.fixture
def topic(kafka_bootstrap: str) -> Iterator[str]:
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap)
    name = f"test.registry.{uuid.uuid4().hex[:12]}"
    ensure_topics(kafka, [name], partitions=1)
    try:
        yield name
    finally:
        delete_topics(kafka, [name])


def _consume(bootstrap: str, topic: str, count: int, timeout_s: float = 30.0) -> list[Message]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-registry-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    messages: list[Message] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(messages) < count and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            messages.append(msg)
    finally:
        consumer.close()
    assert len(messages) == count, f"got {len(messages)} of {count} messages in {timeout_s:g} s"
    return messages


def test_confluent_avro_serializer_produces_through_our_registry(
    kafka_bootstrap: str, registry: Registry, topic: str
) -> None:
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "log_level": 4})
    errors: list[Any] = []
    with SchemaRegistryClient({"url": registry.url}) as client:
        serializer = AvroSerializer(client, SCHEMA_FILE.read_text(encoding="utf-8"))
        for record in RECORDS:
            value = serializer(record, SerializationContext(topic, MessageField.VALUE))
            assert value is not None
            producer.produce(
                topic,
                key=record["user_id"].encode(),
                value=value,
                on_delivery=lambda err, _msg: errors.append(err),
            )
    assert producer.flush(30) == 0
    assert errors == [None] * len(RECORDS)

    # The serializer registered under the TopicNameStrategy subject after the 404 from the
    # associations endpoint it asks first.
    subject = f"{topic}-value"
    (registered,) = registry.catalog.schema_versions(subject)
    assert registered.version == 1
    probes = [(m, p, s) for m, p, s in registry.paths if "/associations/" in p]
    assert probes and all(status == 404 for _, _, status in probes), registry.paths
    assert ("POST", f"/registry/subjects/{subject}/versions", 200) in registry.paths

    messages = _consume(kafka_bootstrap, topic, len(RECORDS))
    decoded = []
    for msg in messages:
        payload = msg.value()
        assert payload is not None
        schema_id, _ = split_wire(payload)
        assert schema_id == registered.id
        decoded.append(decode_wire(payload, registry.catalog.schema_by_id(schema_id)))
    assert decoded == RECORDS

    # A fresh client, so the schema really comes from GET /schemas/ids/{id}.
    with SchemaRegistryClient({"url": registry.url}) as fresh:
        deserializer = AvroDeserializer(fresh)
        first = messages[0].value()
        assert deserializer(first, SerializationContext(topic, MessageField.VALUE)) == RECORDS[0]
    assert any(
        m == "GET" and p == f"/registry/schemas/ids/{registered.id}" and s == 200
        for m, p, s in registry.paths
    ), registry.paths


def test_incompatible_schema_is_refused_to_the_serializer(registry: Registry) -> None:
    """A producer with an incompatible schema gets the registry's 409 naming the field."""
    subject = f"test.registry.{uuid.uuid4().hex[:8]}-value"
    text = SCHEMA_FILE.read_text(encoding="utf-8")
    widened = text.replace(
        '{"name": "currency", "type": "string"},',
        '{"name": "currency", "type": "string"},\n    {"name": "channel", "type": "string"},',
    )
    assert widened != text
    with SchemaRegistryClient({"url": registry.url}) as client:
        first_id = client.register_schema(subject, Schema(text, "AVRO"))
        assert client.register_schema(subject, Schema(text, "AVRO")) == first_id
        with pytest.raises(SchemaRegistryError) as caught:
            client.register_schema(subject, Schema(widened, "AVRO"))
        assert caught.value.http_status_code == 409
        assert caught.value.error_code == 409
        assert "'channel'" in caught.value.error_message
        assert client.test_compatibility(subject, Schema(widened, "AVRO")) is False
        assert client.get_latest_version(subject).schema_id == first_id
        assert client.get_compatibility() == "BACKWARD"
