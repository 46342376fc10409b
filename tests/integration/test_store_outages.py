"""Store outages mid-stream: the worker waits them out, loses nothing, dead-letters nothing.

Redis and Kafka are each stopped for 30 s while a real ``headwater worker`` is consuming, then
started again on the same port and data directory (as an operator restarting a service
does). The worker must stay up the whole time (retrying with backoff, logging the fault once
per episode), and at the end online = offline = the brute-force reference, with every event
stored exactly once and the dead-letter topic empty.

Each test runs its own private Redis or Kafka (the session's shared services stay up).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from confluent_kafka import Consumer, TopicPartition

from headwater.ingest import ingest_files
from headwater.processes import free_port
from headwater.sample_data import generate_transactions
from headwater.schemas.settings import Settings, load_settings
from headwater.stack import start_kafka, start_redis, stop_kafka, stop_redis
from tests.integration.pipeline import Deployment, make_deployment
from tests.integration.test_exactly_once import (
    FAST_FAILOVER,
    assert_offline_exactly_once,
    assert_online_equals_brute_force,
    log_text,
    start_worker,
)

pytestmark = pytest.mark.integration

MINUTE = 60_000
OUTAGE_S = 30.0


def dead_letters(deployment: Deployment) -> int:
    """Messages on the deployment's dead-letter topic (0 when it has none or does not exist)."""
    consumer = Consumer(
        {"bootstrap.servers": deployment.settings.kafka.bootstrap_servers, "group.id": "probe"}
    )
    try:
        topic = f"dlq.{deployment.source}"
        metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if metadata is None or metadata.error is not None:
            return 0
        total = 0
        for p in metadata.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            total += high - low
        return total
    finally:
        consumer.close()


def _data(seed: int) -> tuple:  # type: ignore[type-arg]
    data = generate_transactions(
        end_ms=time.time_ns() // 1_000_000 // MINUTE * MINUTE,
        users=15,
        days=2,
        events_per_user_day=25,
        seed=seed,
    )
    half = data.num_rows // 2
    return data, data.slice(0, half), data.slice(half)


def _produce(deployment: Deployment, part: object, name: str) -> None:
    path = deployment.settings.home / f"{name}.parquet"
    pq.write_table(part, path)
    ingest_files(deployment.settings, deployment.source, [path], show_progress=False)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[Settings]:
    own = load_settings(
        home=tmp_path / "redis", redis={"url": f"redis://127.0.0.1:{free_port()}/0"}
    )
    start_redis(own)
    try:
        yield own
    finally:
        stop_redis(own)


def test_redis_stopped_30s_mid_stream_loses_nothing(
    tmp_path: Path, kafka_bootstrap: str, private_redis: Settings
) -> None:
    data, first, second = _data(seed=31)
    with make_deployment(tmp_path, kafka_bootstrap, private_redis.redis.url) as deployment:
        worker = start_worker(deployment, {**deployment.env, **FAST_FAILOVER}, "worker")
        deployment.ingest(first, worker)

        stop_redis(private_redis)  # a clean stop: its append-only file keeps every state
        _produce(deployment, second, "second")
        time.sleep(OUTAGE_S)
        assert worker.alive(), f"the worker died while Redis was down:\n{worker.tail(40)}"
        text = log_text(worker)
        assert "redis is failing" in text, text[-3000:]
        assert private_redis.redis.url.split("/")[2] in text  # the address is named

        start_redis(private_redis)
        deployment.wait_caught_up(worker)
        assert worker.alive()
        assert "redis is back" in log_text(worker)
        assert "CRITICAL" not in log_text(worker)

        url = deployment.start_api()
        assert_online_equals_brute_force(deployment, url, data)
        assert_offline_exactly_once(deployment, data)
        assert dead_letters(deployment) == 0


def test_kafka_stopped_30s_mid_stream_loses_nothing(
    tmp_path: Path, redis_url: str, private_kafka: Settings
) -> None:
    own = private_kafka
    data, first, second = _data(seed=32)
    with make_deployment(tmp_path, own.kafka.bootstrap_servers, redis_url) as deployment:
        worker = start_worker(deployment, {**deployment.env, **FAST_FAILOVER}, "worker")
        deployment.ingest(first, worker)
        _produce(deployment, second, "second")
        stop_kafka(own)  # while the worker consumes the second half
        time.sleep(OUTAGE_S)
        assert worker.alive(), f"the worker died while Kafka was down:\n{worker.tail(40)}"

        start_kafka(own)
        deployment.wait_caught_up(worker, timeout_s=180)
        assert worker.alive()
        assert "CRITICAL" not in log_text(worker)

        url = deployment.start_api()
        assert_online_equals_brute_force(deployment, url, data)
        assert_offline_exactly_once(deployment, data)
        assert dead_letters(deployment) == 0
