"""`headwater demo` next to a user's own deployment: it touches nothing of theirs.

The user here has exactly the names the bundled example would take: a source named
``transactions`` (topics ``raw.transactions`` and ``dlq.transactions``), the feature set
``user_spend`` with its online keys in Redis database 15, and a home with a catalog, Delta
tables and ingest bookkeeping. Those names are only safe to take on services of the test's
own, so this test starts a private broker and a private redis-server (never the shared ones)
and stops exactly those processes.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import redis
from rich.console import Console

from headwater.apply import apply_definitions
from headwater.connectors.kafka import EventProducer, admin_client, read_range
from headwater.demo import run_demo
from headwater.examples import write_example_definitions
from headwater.ingest import ingest_files
from headwater.sample_data import generate_transactions
from headwater.schemas.settings import KafkaSettings, Settings, load_settings
from headwater.stack import start_kafka, start_redis, stop_kafka, stop_redis
from tests.integration.services import free_ports

pytestmark = pytest.mark.integration

USER_TOPICS = ["raw.transactions", "dlq.transactions"]


@pytest.fixture
def private_stack(tmp_path: Path) -> Iterator[Settings]:
    """A broker and a redis-server of this test only, on free ports; the user's settings
    point at them (Redis database 15: the one the demo used to flush)."""
    broker, controller, redis_port = free_ports(3)
    stack = load_settings(
        home=tmp_path / "stack",
        kafka={"bootstrap_servers": f"127.0.0.1:{broker}", "partitions": 2},
        redis={"url": f"redis://127.0.0.1:{redis_port}/15"},
        stack={"controller_port": controller, "kafka_heap": "384m"},
    )
    kafka, redis_server = start_kafka(stack), start_redis(stack)
    assert kafka.state == "started" and redis_server.state == "started"
    try:
        yield load_settings(
            home=tmp_path / "home",
            kafka=stack.kafka.model_dump(),
            redis=stack.redis.model_dump(),
            stack=stack.stack.model_dump(),
        )
    finally:
        stop_kafka(stack)
        stop_redis(stack)


def _topic_contents(
    kafka: KafkaSettings,
) -> dict[str, list[tuple[int, int, bytes | None, bytes | None]]]:
    admin = admin_client(kafka)
    topics = admin.list_topics(timeout=10).topics
    contents = {}
    for topic in USER_TOPICS:
        assert topic in topics, f"the user's topic {topic} is gone"
        contents[topic] = [
            (m.partition, m.offset, m.key, m.value)
            for p in sorted(topics[topic].partitions)
            for batch in read_range(kafka, topic, p, 0, 1 << 62)
            for m in batch
        ]
    return contents


def _redis_contents(url: str) -> dict[int, dict[bytes, bytes | None]]:
    """Every key of databases 0 and 15 with its serialized value, except the demo's own."""
    found: dict[int, dict[bytes, bytes | None]] = {}
    for db in (0, 15):
        client = redis.Redis.from_url(url.rsplit("/", 1)[0] + f"/{db}")
        found[db] = {
            k: client.dump(k) for k in client.scan_iter(count=1000) if not k.startswith(b"hw-demo:")
        }
        client.close()
    return found


def _files(home: Path) -> dict[str, str]:
    """sha256 of every file of the user's home, except ``<home>/demo`` (the demo's own) and
    ``<home>/stack`` (``headwater up``'s, which the demo runs first: here it finds the
    services up and only takes its start locks)."""
    return {
        str(p.relative_to(home)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(home.rglob("*"))
        if p.is_file() and p.relative_to(home).parts[0] not in ("demo", "stack")
    }


def test_demo_keeps_to_its_own_topics_keys_and_files(
    private_stack: Settings, tmp_path: Path
) -> None:
    user = private_stack
    # The user's deployment: the bundled definitions under their real names, their events,
    # two dead letters their worker wrote, online state in Redis databases 15 and 0.
    apply_definitions(user, write_example_definitions(tmp_path / "defs"))
    events = generate_transactions(end_ms=1_764_000_000_000, users=5, days=1, events_per_user_day=6)
    pq.write_table(events, tmp_path / "events.parquet")
    assert (
        ingest_files(user, "transactions", [tmp_path / "events.parquet"], show_progress=False)
        == events.num_rows
    )
    producer = EventProducer(user.kafka)
    for i in range(2):
        producer.produce(
            "dlq.transactions", b"\x00undecodable", f"u{i}".encode(), {"hw.reason": b"undecodable"}
        )
    producer.flush()
    client = redis.Redis.from_url(user.redis.url)
    client.hset("hw:user_spend:v1:{u00001}", mapping={"o": '{"0":3}', "L": "[]"})
    client.close()
    redis.Redis.from_url(user.redis.url.rsplit("/", 1)[0] + "/0").set("session:42", "the user's")
    (user.home / "notes.txt").write_text("the user's own file\n")
    before = (_topic_contents(user.kafka), _redis_contents(user.redis.url), _files(user.home))
    assert (
        len(before[0]["raw.transactions"]) == events.num_rows
        and len(before[0]["dlq.transactions"]) == 2
    )

    for run in (1, 2):  # the second run resets the first run's state, and only that
        out = io.StringIO()
        run_demo(Console(file=out, width=200), base=user, card_holders=30)
        assert "identical" in out.getvalue(), out.getvalue()
        after = (_topic_contents(user.kafka), _redis_contents(user.redis.url), _files(user.home))
        assert after[0] == before[0], f"run {run}: the user's topics changed"
        assert after[1] == before[1], f"run {run}: the user's Redis keys changed"
        assert after[2] == before[2], f"run {run}: the user's files changed"

    # The demo did its work under its own names.
    topics = admin_client(user.kafka).list_topics(timeout=10).topics
    assert {"headwater-demo.raw.transactions", "headwater-demo.dlq.transactions"} <= set(topics)
    demo_keys = redis.Redis.from_url(user.redis.url).keys("hw-demo:user_spend:v1:*")
    assert 0 < len(demo_keys) <= 30  # one per card holder with an approved transaction
    assert (user.home / "demo" / ".headwater-demo").is_file()
