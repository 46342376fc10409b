"""``POST /v1/push/{source}`` against the real broker: all or nothing, then served like any event."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pyarrow as pa
import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition

from headwater.processes import HeadwaterProcess, free_port, wait_http_ok
from headwater.sample_data import generate_transactions
from tests.integration.pipeline import Deployment
from tests.reference import brute_force
from tests.reference import example_events_by_user as _events_by_user

pytestmark = pytest.mark.integration

MINUTE = 60_000


def _high_watermark(bootstrap: str, topic: str) -> int:
    """Messages ever written to ``topic`` (sum of the partitions' high watermarks)."""
    probe = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "push-test-probe", "enable.auto.commit": False}
    )
    try:
        partitions = probe.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(
            probe.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions
        )
    finally:
        probe.close()


def committed_messages(bootstrap: str, topic: str) -> list[tuple[bytes | None, bytes | None]]:
    """Every message of ``topic`` a read-committed consumer sees, as ``(key, value)``: pushes
    are transactions, whose markers take offsets, so high watermarks overcount."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "push-test-reader",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        out, ended = [], set()
        deadline = time.monotonic() + 30
        while len(ended) < len(partitions):
            assert time.monotonic() < deadline, f"{topic}: no end of partitions {ended}"
            for m in consumer.consume(1000, timeout=1):
                error = m.error()
                if error is None:
                    out.append((m.key(), m.value()))
                elif error.code() == KafkaError._PARTITION_EOF:
                    ended.add(m.partition())
                else:
                    raise AssertionError(f"reading {topic}: {error}")
        return out
    finally:
        consumer.close()


def _iso(ms: int) -> str:
    return (
        datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
    )


def test_push_is_all_or_nothing_and_served_like_brute_force(deployment: Deployment) -> None:
    settings = deployment.settings
    bootstrap = settings.kafka.bootstrap_servers
    topic = deployment.topic
    url = deployment.start_api()
    push = f"{url}/v1/push/{deployment.source}"
    now_ms = time.time_ns() // 1_000_000

    rows = generate_transactions(
        end_ms=now_ms // MINUTE * MINUTE, users=25, days=1, events_per_user_day=12, seed=3
    ).to_pylist()
    # Ties in event time (arrival order decides `last`), a late event and one slightly ahead.
    rows.append({**rows[-1], "transaction_id": "tie", "merchant_id": "m_tie", "status": "approved"})
    rows.append(
        {
            **rows[3],
            "transaction_id": "late",
            "status": "approved",
            "event_time": now_ms - 86_400_000 + 7,
        }
    )
    rows.append(
        {**rows[9], "transaction_id": "ahead", "status": "approved", "event_time": now_ms + 60_000}
    )
    assert 200 <= len(rows) <= 1000
    # Every third event gives its time as ISO-8601 with a zone; the topic holds epoch ms either way.
    wire = [
        {**r, "event_time": _iso(r["event_time"])} if i % 3 == 0 else r for i, r in enumerate(rows)
    ]

    with httpx.Client(timeout=30) as client:
        # One bad event among good ones: the whole request is refused and nothing is produced.
        before = _high_watermark(bootstrap, topic)
        bad = [
            *wire[:5],
            {**wire[5], "amount": "12.5"},
            {**wire[6], "event_time": "2026-11-26T10:00:00"},
            *wire[7:10],
        ]
        response = client.post(push, json={"events": bad})
        assert response.status_code == 422, response.text
        body = response.json()
        assert "2 of 10" in body["detail"]
        assert [(e["index"], e["field"]) for e in body["errors"]] == [
            (5, "amount"),
            (6, "event_time"),
        ]
        assert "expected a number" in body["errors"][0]["reason"]
        assert "no time zone" in body["errors"][1]["reason"]
        far = client.post(push, json={"events": [{**rows[0], "event_time": now_ms + 3_600_000}]})
        assert far.status_code == 422 and far.json()["errors"][0]["field"] == "event_time"
        assert (
            client.post(push, json={"events": [{**rows[0], "colour": "red"}]}).json()["errors"][0][
                "field"
            ]
            == "colour"
        )

        # Limits: too many events, too large a body (declared or streamed without a length).
        many = client.post(push, json={"events": [rows[0]] * 10_001})
        assert many.status_code == 413 and "10000" in many.json()["detail"]
        huge = b'{"events": [' + b" " * (10 * 1024 * 1024) + b"]}"
        big = client.post(push, content=huge, headers={"content-type": "application/json"})
        assert big.status_code == 413 and str(10 * 1024 * 1024) in big.json()["detail"]
        streamed = client.post(
            push,
            content=iter([huge[i : i + 65536] for i in range(0, len(huge), 65536)]),
            headers={"content-type": "application/json"},
        )
        assert streamed.status_code == 413

        # Unknown source: 404 naming the known ones.
        missing = client.post(f"{url}/v1/push/nope", json={"events": [rows[0]]})
        assert missing.status_code == 404 and deployment.source in missing.json()["detail"]
        assert _high_watermark(bootstrap, topic) == before == 0

        # Valid requests, in order, in chunks of varied size: 202 once Kafka has them all.
        accepted = 0
        for start, size in ((0, 1), (1, 7), (8, 100), (108, 50)):
            r = client.post(push, json={"events": wire[start : start + size]})
            assert r.status_code == 202, r.text
            accepted += r.json()["accepted"]
        r = client.post(push, json={"events": wire[158:]})
        assert r.status_code == 202, r.text
        accepted += r.json()["accepted"]
        assert accepted == len(rows)
        assert len(committed_messages(bootstrap, topic)) == len(rows)

    worker = deployment.start_worker()
    deployment.wait_caught_up(worker)

    defs = deployment.definitions()
    fs = defs.feature_set(deployment.feature_set)
    field_types = deployment.history_types()
    by_user = _events_by_user(pa.Table.from_pylist(rows))
    users = sorted(by_user) + ["nobody"]
    refs = [f"{fs.name}:{f.name}" for f in fs.features]
    response = httpx.post(
        f"{url}/v1/online-features",
        json={"features": refs, "entities": {"user_id": users}},
        timeout=30,
    ).json()
    served_at = datetime.fromisoformat(response["served_at"])
    t = round(served_at.timestamp() * 1000)
    for result in response["results"]:
        user = result["entity"]["user_id"]
        want, status = brute_force(fs, field_types, by_user.get(user, []), t)
        assert result["values"] == want, user
        assert result["statuses"] == [status] * len(refs), user


def test_push_answers_503_with_retry_after_when_kafka_is_down(deployment: Deployment) -> None:
    port = free_port()
    env = {
        **deployment.env,
        "HEADWATER_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "HEADWATER_SERVING__PORT": str(port),
    }
    api = HeadwaterProcess(
        ["serve"], env=env, log_file=deployment.settings.home / "api-nokafka.log"
    )
    deployment.processes.append(api)
    url = f"http://127.0.0.1:{port}"
    wait_http_ok(f"{url}/healthz", api)
    event: dict[str, Any] = {
        "transaction_id": "t1",
        "user_id": "u1",
        "merchant_id": "m1",
        "amount": 3.0,
        "currency": "EUR",
        "status": "approved",
        "event_time": time.time_ns() // 1_000_000,
    }
    start = time.monotonic()
    response = httpx.post(
        f"{url}/v1/push/{deployment.source}", json={"events": [event]}, timeout=60
    )
    assert response.status_code == 503, response.text
    assert int(response.headers["retry-after"]) > 0
    assert "Kafka" in response.json()["detail"]
    assert "127.0.0.1" not in response.text  # the broker's address stays in the log
    assert time.monotonic() - start < 15
