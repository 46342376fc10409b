"""``headwater up`` / ``headwater down``: the local Kafka broker and Redis the project runs on.

``up`` reuses anything already answering at the configured addresses and starts the rest;
``down`` stops only processes whose pid files ``up`` wrote under ``<home>/stack``. Both are
idempotent, so scripts and test fixtures can call them without checking first.
"""

from __future__ import annotations

from headwater.schemas.settings import Settings
from headwater.stack.errors import StackError
from headwater.stack.kafka import (
    kafka_answers,
    start_kafka,
    start_kafka_nodes,
    stop_kafka,
    stop_kafka_nodes,
)
from headwater.stack.redis import redis_answers, start_redis, stop_redis
from headwater.stack.redis_cluster import start_redis_cluster, stop_redis_cluster
from headwater.stack.secure import secure_settings
from headwater.stack.status import ServiceState, ServiceStatus

__all__ = [
    "ServiceState",
    "ServiceStatus",
    "StackError",
    "down",
    "kafka_answers",
    "redis_answers",
    "start_kafka",
    "start_redis",
    "start_redis_cluster",
    "stop_kafka",
    "stop_redis",
    "stop_redis_cluster",
    "up",
]


def up(settings: Settings) -> list[ServiceStatus]:
    """Bring up Kafka (one broker, or ``stack.kafka_brokers`` nodes), then Redis, reusing
    whatever already answers.

    With ``stack.secure`` both require authentication (``headwater.stack.secure``): the
    passwords are generated on the first such run and kept under ``<home>/stack/secrets``.

    Raises:
        StackError: with a one-line cause and fix; services started before it keep running,
            and a rerun of ``up`` reuses them.
    """
    if settings.stack.secure:
        settings = secure_settings(settings)
    kafka = start_kafka_nodes(settings)
    if settings.redis.cluster:
        return [*kafka, *start_redis_cluster(settings)]
    return [*kafka, start_redis(settings)]


def down(settings: Settings) -> list[ServiceStatus]:
    """Stop the Kafka broker(s) and Redis (the single server, and the Redis Cluster nodes of
    ``up --redis-cluster``) that ``up`` started with these settings' ``home``."""
    cluster = stop_redis_cluster(settings)
    single = stop_redis(settings)
    # After `up --redis-cluster` there is no single server to report as "not running".
    shown = [single] if single.state != "not running" or not cluster else []
    return [*stop_kafka_nodes(settings), *shown, *cluster]
