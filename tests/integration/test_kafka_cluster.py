"""A replicated Kafka (DESIGN §7; issue 16): three KRaft nodes from ``headwater up
--kafka-brokers 3``'s code, topics with three copies and two in sync, one node killed while
events flow, and workers joining and leaving a 12-partition topic under load.

In every case the end state is checked against brute force: online = offline = the
reference, nothing lost, nothing counted twice.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from confluent_kafka.admin import ConfigResource, NewTopic  # type: ignore[attr-defined]

from headwater.connectors.errors import ProduceError
from headwater.connectors.kafka import admin_client, delete_topics, producer_config
from headwater.connectors.kafka_idempotent import ProduceOutcomeUnknownError
from headwater.connectors.kafka_transactions import TransactionalProducer
from headwater.processes import HeadwaterProcess
from headwater.sample_data import generate_transactions
from headwater.schemas.settings import KafkaSettings
from headwater.stack import process
from tests.integration import test_exactly_once as exactly_once
from tests.integration.kafka_cluster import KafkaCluster
from tests.integration.pipeline import Deployment, make_deployment
from tests.integration.test_push import committed_messages
from tests.integration.test_scale_out import assignment

pytestmark = [pytest.mark.integration, pytest.mark.distributed]

MINUTE = 60_000


def _no_critical(*workers: HeadwaterProcess) -> None:
    for w in workers:
        text = exactly_once.log_text(w)
        assert "CRITICAL" not in text, [line for line in text.splitlines() if "CRITICAL" in line][
            :5
        ]


def _check_end_state(deployment: Deployment, data: pa.Table) -> None:
    url = deployment.start_api()
    served_at = exactly_once.assert_online_equals_brute_force(deployment, url, data)
    exactly_once.assert_offline_exactly_once(deployment, data)
    exactly_once.assert_point_in_time_equals_brute_force(deployment, data, [served_at])


def test_apply_creates_topics_with_three_copies_two_of_them_in_sync(
    kafka_cluster: KafkaCluster, redis_url: str, tmp_path: Path
) -> None:
    with make_deployment(tmp_path, kafka_cluster.bootstrap, redis_url) as dep:
        admin = admin_client(dep.settings.kafka)
        source = dep.definitions().source(dep.source)
        for topic in (source.topic, source.dlq_topic):
            # A node may answer before the new topic reached its metadata: ask until it has.
            def partitions_of(name: str = topic) -> dict[int, Any]:
                return dict(admin.list_topics(name, timeout=10).topics[name].partitions)

            assert process.wait_until(lambda: len(partitions_of()) > 0, 30, 0.2), topic
            partitions = partitions_of()
            assert len(partitions) == dep.settings.kafka.partitions
            assert {len(p.replicas) for p in partitions.values()} == {3}, topic
            assert {len(p.isrs) for p in partitions.values()} == {3}, topic
            resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
            config = admin.describe_configs([resource])[resource].result(timeout=10)
            assert config["min.insync.replicas"].value == "2", topic
    # Every Headwater producer (push, ingest, the worker's dead letters) waits for all
    # in-sync copies.
    assert producer_config(KafkaSettings(), delivery_timeout_s=1, linger_ms=0)["acks"] == "all"


def test_a_broker_killed_mid_stream_loses_no_acknowledged_event(
    kafka_cluster: KafkaCluster, redis_url: str, tmp_path: Path
) -> None:
    """The leader of partition 0 is killed (-9) while ``ingest`` produces and the worker
    consumes: production and consumption carry on with the other two nodes."""
    with make_deployment(tmp_path, kafka_cluster.bootstrap, redis_url) as dep:
        t0 = time.monotonic()
        env = {**dep.env, **exactly_once.FAST_FAILOVER}
        end = time.time_ns() // 1_000_000 // MINUTE * MINUTE
        data = generate_transactions(end_ms=end, users=40, days=2, events_per_user_day=25, seed=5)
        worker = exactly_once.start_worker(dep, env, "worker")
        producer = exactly_once.SlowProducer(dep, data, chunk=40, pause_s=0.25)
        producer.start()
        try:
            deadline = time.monotonic() + 90
            while sum(exactly_once.applied_batches(worker)) < 200:
                assert worker.alive(), worker.tail(40)
                assert time.monotonic() < deadline, worker.tail(40)
                time.sleep(0.2)
            admin = admin_client(dep.settings.kafka)
            leader = admin.list_topics(dep.topic, timeout=10).topics[dep.topic].partitions[0].leader
            assert producer.is_alive(), "production ended before the kill; slow it down"
            kafka_cluster.kill(leader)
            killed_at = time.monotonic() - t0
            produced = producer.finish(timeout_s=180)  # every row acknowledged
            dep.wait_caught_up(worker, timeout_s=180)
            assert worker.alive(), worker.tail(40)
            _no_critical(worker)
            _check_end_state(dep, data)
        finally:
            kafka_cluster.restore()
        print(
            f"\n{produced} events; node {leader} killed at {killed_at:.1f} s; all checked "
            f"after {time.monotonic() - t0:.1f} s"
        )


def test_pushes_acknowledged_while_a_broker_dies_are_all_written_once(
    kafka_cluster: KafkaCluster,
) -> None:
    """The push API's producer (single events idempotent, several in a transaction): every
    message it acknowledged is in the topic once; "nothing written" means absent."""
    kafka = kafka_cluster.settings.kafka
    topic = f"push-cluster-{uuid.uuid4().hex[:8]}"
    admin = admin_client(kafka)
    admin.create_topics([NewTopic(topic, 3, -1)])[topic].result(timeout=30)
    producer = TransactionalProducer(kafka, delivery_timeout_s=60, name="cluster-push")
    outcomes: dict[bytes, str] = {}

    async def push(i: int) -> None:
        batch = [(b"k%d" % i, b"v%d-%d" % (i, j)) for j in range(1 + i % 3)]
        try:
            await producer.produce_all(topic, batch)
            state = "acked"
        except ProduceOutcomeUnknownError:
            state = "unknown"
        except ProduceError:
            state = "refused"
        for _, value in batch:
            outcomes[value] = state

    async def run() -> None:
        for start in range(0, 300, 10):
            await asyncio.gather(*(push(i) for i in range(start, start + 10)))
            if start == 100:
                leader = admin.list_topics(topic, timeout=10).topics[topic].partitions[0].leader
                await asyncio.to_thread(kafka_cluster.kill, leader)

    try:
        asyncio.run(run())
        counts = {s: list(outcomes.values()).count(s) for s in ("acked", "unknown", "refused")}
        print(f"\npushes while a node died: {counts}")
        got = [v for _, v in committed_messages(kafka.bootstrap_servers, topic)]
        acked = {v for v, s in outcomes.items() if s == "acked"}
        refused = {v for v, s in outcomes.items() if s == "refused"}
        assert len(got) == len(set(got)), "a message was written twice"
        assert acked <= set(got), f"{len(acked - set(got))} acknowledged messages lost"
        assert not (refused & set(got)), "a message answered 'nothing written' was written"
        # With two of three nodes up the pushes go on: most are acknowledged.
        assert len(acked) >= 0.9 * len(outcomes), counts
    finally:
        producer.close()
        kafka_cluster.restore()
        delete_topics(kafka, [topic])


def test_workers_join_and_leave_a_twelve_partition_topic_under_load(
    kafka_cluster: KafkaCluster, redis_url: str, tmp_path: Path
) -> None:
    """1 -> 3 -> 2 workers: each newcomer gets a share of the 12 partitions, the leaver's
    share moves to the others, and every event is counted once."""
    all_partitions = set(range(12))
    with make_deployment(
        tmp_path, kafka_cluster.bootstrap, redis_url, kafka={"partitions": 12}
    ) as dep:
        topic = dep.topic
        env = {
            **dep.env,
            **exactly_once.FAST_FAILOVER,
            "HEADWATER_WORKER__BATCH_MAX_EVENTS": "50",
        }
        end = time.time_ns() // 1_000_000 // MINUTE * MINUTE
        data = generate_transactions(end_ms=end, users=120, days=2, events_per_user_day=15, seed=9)
        producer = exactly_once.SlowProducer(dep, data, chunk=40, pause_s=0.3)
        a = exactly_once.start_worker(dep, env, "worker_a")
        producer.start()
        _wait(lambda: assignment(a, topic) == all_partitions, "a to own all 12", [a])
        b = exactly_once.start_worker(dep, env, "worker_b")
        c = exactly_once.start_worker(dep, env, "worker_c")

        def split(*workers: HeadwaterProcess) -> bool:
            shares = [assignment(w, topic) for w in workers]
            union = set().union(*shares)
            return all(shares) and union == all_partitions and sum(map(len, shares)) == 12

        _wait(lambda: split(a, b, c), "a, b and c to split the 12 partitions", [a, b, c])
        three = {w.log_file.stem: sorted(assignment(w, topic)) for w in (a, b, c)}
        before = {w.log_file.stem: sum(exactly_once.applied_batches(w)) for w in (a, b, c)}
        _wait(
            lambda: all(
                sum(exactly_once.applied_batches(w)) > before[w.log_file.stem] for w in (a, b, c)
            ),
            "all three to apply events",
            [a, b, c],
        )
        assert producer.is_alive(), "production ended before b left; slow it down"
        assert b.stop() == 0, b.tail(40)
        _wait(lambda: split(a, c), "a and c to take over b's partitions", [a, c])
        two = {w.log_file.stem: sorted(assignment(w, topic)) for w in (a, c)}
        producer.finish(timeout_s=180)
        dep.wait_caught_up(a, timeout_s=180)
        _no_critical(a, b, c)
        _check_end_state(dep, data)
        print(f"\nthree workers: {three}\ntwo workers: {two}")


def _wait(
    predicate: Callable[[], bool], what: str, workers: list[HeadwaterProcess], timeout_s: float = 90
) -> None:
    start = time.monotonic()
    while not predicate():
        for w in workers:
            assert w.alive(), f"{w.log_file.name} exited waiting for {what}:\n{w.tail(40)}"
        if time.monotonic() - start > timeout_s:
            tails = "\n".join(f"--- {w.log_file.name}\n{w.tail(25)}" for w in workers)
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}\n{tails}")
        time.sleep(0.2)
