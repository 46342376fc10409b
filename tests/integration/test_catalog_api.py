"""The catalog over HTTP and the CLI, and a standard Confluent Avro producer feeding a source
through Headwater's registry API with no Headwater code on the producer side."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from tests.integration.pipeline import EXAMPLES, Deployment

pytestmark = pytest.mark.integration


def test_catalog_over_http(deployment: Deployment) -> None:
    url = deployment.start_api()
    name = deployment.feature_set
    sets = httpx.get(f"{url}/v1/feature-sets", timeout=10).json()
    assert [s["name"] for s in sets] == [name]
    assert sets[0]["owner"] == "risk-team" and sets[0]["tags"] == ["fraud", "payments"]
    assert sets[0]["filter"] == "status == 'approved'"

    one = httpx.get(f"{url}/v1/feature-sets/{name}", timeout=10).json()
    assert one["versions"] == [{"version": 1, "status": "active"}]
    assert {"name": "spend_1h", "function": "sum", "field": "amount", "window": "1h"} in one[
        "features"
    ]
    missing = httpx.get(f"{url}/v1/feature-sets/nosuch", timeout=10)
    assert missing.status_code == 404 and "nosuch" in missing.json()["detail"]

    hits = httpx.get(f"{url}/v1/features", params={"q": "payments spend_1"}, timeout=10).json()
    # Words match names by substring: a random suffix starting with "1" makes the set's own
    # name (user_spend_1...) match "spend_1", and then every feature of the set does.
    every = sorted(f["name"] for f in one["features"])
    assert sorted(h["feature"] for h in hits) == (
        every if "spend_1" in name else ["spend_1d", "spend_1h"]
    )
    assert hits[0]["reference"].startswith(f"{name}@v1:")
    assert httpx.get(
        f"{url}/v1/features", params={"q": "gold"}, timeout=10
    ).json()  # labels are searched
    assert (
        httpx.get(f"{url}/v1/features", params={"q": "nothing-like-this"}, timeout=10).json() == []
    )

    lineage = httpx.get(f"{url}/v1/lineage/{name}", timeout=10).json()
    assert lineage["source"]["topic"] == deployment.topic
    assert lineage["source"]["schema_subject"] == f"{deployment.topic}-value"
    assert lineage["source"]["schema_versions"][0]["version"] == 1
    (version,) = lineage["versions"]
    assert version["online_keyspace"] == f"hw:{name}:v1:{{*}}"
    assert version["offline_table"].endswith(f"{name}__v1")
    assert lineage["feature_services"][0]["name"] == "fraud_model"
    assert lineage["training_sets"] == []


def test_catalog_cli_and_dry_run(deployment: Deployment) -> None:
    name = deployment.feature_set
    listed = deployment.cli("catalog", "list")
    assert listed.returncode == 0, listed.stderr
    assert f"{name}@v1" in listed.stdout and "risk-team" in listed.stdout

    found = deployment.cli("catalog", "search", "fraud", "avg")
    assert found.returncode == 0
    assert f"{name}@v1:avg_amount_7d" in found.stdout

    shown = json.loads(deployment.cli("catalog", "show", name).stdout)
    assert shown["name"] == name and shown["ttl"] == "7d"
    graph = json.loads(deployment.cli("catalog", "lineage", name).stdout)
    assert graph["source"]["topic"] == deployment.topic

    unknown = deployment.cli("catalog", "show", "nosuch")
    assert unknown.returncode == 1
    assert "unknown feature set 'nosuch'" in unknown.stderr

    plan = deployment.cli("apply", str(deployment.defs_dir), "--dry-run")
    assert plan.returncode == 0, plan.stderr
    assert "dry run" in plan.stdout
    assert f"unchanged    feature_set      {name}@v1" in plan.stdout

    bad = deployment.cli("retire", f"{name}@v1")
    assert bad.returncode == 1
    assert "only active version" in bad.stderr


def test_standard_confluent_producer_feeds_a_source(deployment: Deployment) -> None:
    url = deployment.start_api()
    worker = deployment.start_worker()
    schema = (EXAMPLES / "transactions.avsc").read_text()
    with SchemaRegistryClient({"url": f"{url}/registry"}) as registry:
        serialize = AvroSerializer(registry, schema)
        producer = Producer({"bootstrap.servers": deployment.settings.kafka.bootstrap_servers})
        now = time.time_ns() // 1_000_000
        amounts = [12.5, 7.25, 30.0]
        for i, amount in enumerate(amounts):
            record = {
                "transaction_id": f"c{i}",
                "user_id": "confluent-user",
                "merchant_id": f"m{i}",
                "amount": amount,
                "currency": "EUR",
                "status": "approved",
                "event_time": now - 1000 + i,
            }
            value = serialize(record, SerializationContext(deployment.topic, MessageField.VALUE))
            producer.produce(deployment.topic, value=value, key=b"confluent-user")
    assert producer.flush(30) == 0
    deployment.wait_caught_up(worker)
    name = deployment.feature_set
    body = httpx.post(
        f"{url}/v1/online-features",
        json={
            "features": [f"{name}:txn_count_1h", f"{name}:spend_1h", f"{name}:last_merchant"],
            "entities": {"user_id": ["confluent-user"]},
        },
        timeout=10,
    ).json()
    assert body["results"][0]["values"] == [3, 49.75, "m2"]
    assert body["results"][0]["statuses"] == ["PRESENT"] * 3
