"""A pipeline through an authenticated Kafka (SASL/SCRAM-SHA-512) and an ACL-protected Redis.

A private stack is started the way ``headwater up --secure`` starts one, on free ports (the
shared broker and Redis are never touched): every client (ingest's producer, admin, the
worker's faust consumer, its DLQ producer, the API) must log in, and a wrong password is
refused with a message that names the problem and never quotes the password. No password is
on any process's command line.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from headwater.connectors.errors import KafkaUnavailableError, OnlineStoreError
from headwater.connectors.kafka import EventProducer, wait_for_kafka
from headwater.connectors.online_redis import RedisOnlineStore
from headwater.sample_data import generate_transactions
from headwater.schemas.settings import KafkaSettings, RedisSettings, Settings, load_settings
from headwater.stack import down, up
from headwater.stack.secrets import secret_path, stack_secret
from headwater.stack.secure import secure_settings
from tests.integration.pipeline import make_deployment
from tests.integration.services import free_ports
from tests.integration.test_exactly_once import (
    assert_offline_exactly_once,
    assert_online_equals_brute_force,
)

pytestmark = pytest.mark.integration

MINUTE = 60_000
WRONG = "not-the-Passw0rd-4f1c"


@pytest.fixture(scope="module")
def secure_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A private SASL Kafka and ACL Redis, as ``up --secure`` starts them; stopped by the
    pids their pid files record."""
    home = tmp_path_factory.mktemp("secure-stack")
    broker, controller, redis_port = free_ports(3)
    base = load_settings(
        home=home,
        kafka={"bootstrap_servers": f"127.0.0.1:{broker}"},
        redis={"url": f"redis://127.0.0.1:{redis_port}/0"},
        stack={"controller_port": controller, "secure": True},
    )
    statuses = up(base)
    try:
        assert [s.state for s in statuses] == ["started", "started"], statuses
        yield secure_settings(base)
    finally:
        stopped = down(base)
        assert {s.pid for s in stopped} == {s.pid for s in statuses}


def _passwords(settings: Settings) -> list[str]:
    return [stack_secret(settings, name) for name in ("kafka-admin", "kafka-client", "redis")]


def _security(settings: Settings) -> tuple[dict[str, object], dict[str, object]]:
    """The kafka and redis settings a deployment needs to log in to the secure stack."""
    kafka = settings.kafka.model_dump(
        include={"security_protocol", "sasl_mechanism", "sasl_username", "sasl_password"}
    )
    redis_auth = settings.redis.model_dump(include={"username", "password"})
    return kafka, redis_auth


def test_the_stack_refuses_anonymous_clients(secure_stack: Settings) -> None:
    """Without credentials neither store answers: the listener is really SASL and the
    ``default`` Redis user is off."""
    plain = KafkaSettings(bootstrap_servers=secure_stack.kafka.bootstrap_servers)
    with pytest.raises(KafkaUnavailableError):
        wait_for_kafka(plain, timeout_s=3)
    anonymous = redis.Redis.from_url(secure_stack.redis.url, socket_timeout=3)
    with pytest.raises(redis.AuthenticationError):
        anonymous.get("x")
    anonymous.close()
    for path in (
        secret_path(secure_stack, "kafka-client"),
        Path(secure_stack.home).resolve() / "stack" / "kafka" / "server.properties",
        Path(secure_stack.home).resolve() / "stack" / "redis" / "redis.conf",
    ):
        assert path.stat().st_mode & 0o777 == 0o600, path


def test_pipeline_runs_through_sasl_kafka_and_acl_redis(
    secure_stack: Settings, tmp_path: Path
) -> None:
    kafka, redis_auth = _security(secure_stack)
    with make_deployment(
        tmp_path,
        secure_stack.kafka.bootstrap_servers,
        secure_stack.redis.url,
        kafka=kafka,
        redis=redis_auth,
    ) as deployment:
        data = generate_transactions(
            end_ms=time.time_ns() // 1_000_000 // MINUTE * MINUTE,
            users=10,
            days=1,
            events_per_user_day=20,
            seed=5,
        )
        worker = deployment.start_worker()
        deployment.ingest(data, worker)
        url = deployment.start_api()
        assert_online_equals_brute_force(deployment, url, data)
        assert_offline_exactly_once(deployment, data)

        # Every process of the test, the worker and API above all, got its passwords through
        # the environment or a 0600 file: none is on a command line.
        args = subprocess.run(
            ["ps", "-eo", "pid=,args="], capture_output=True, text=True, check=True
        ).stdout
        by_pid = dict(line.strip().split(" ", 1) for line in args.splitlines() if " " in line)
        assert [p.alive() for p in deployment.processes] == [True, True]
        for proc in deployment.processes:
            assert "-m headwater" in by_pid[str(proc.pid)], by_pid.get(str(proc.pid))
        for password in _passwords(secure_stack):
            assert password not in args
        logs = "".join(p.log_file.read_text(errors="replace") for p in deployment.processes)
        for password in _passwords(secure_stack):
            assert password not in logs


def test_a_wrong_kafka_password_is_refused_without_showing_it(secure_stack: Settings) -> None:
    wrong = secure_stack.kafka.model_copy(update={"sasl_password": _secret(WRONG)})
    with pytest.raises(KafkaUnavailableError) as raised:
        wait_for_kafka(wrong, timeout_s=5)
    message = str(raised.value)
    assert "authentication" in message.lower(), message
    assert "kafka.sasl_username" in message, message
    assert WRONG not in message

    # A command line user sees the same, and nothing in its output quotes the password.
    script = (
        "from headwater.schemas.settings import load_settings\n"
        "from headwater.connectors.kafka import wait_for_kafka\n"
        "wait_for_kafka(load_settings().kafka, timeout_s=5)\n"
    )
    env = {
        **os.environ,
        "HEADWATER_KAFKA__BOOTSTRAP_SERVERS": secure_stack.kafka.bootstrap_servers,
        "HEADWATER_KAFKA__SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "HEADWATER_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
        "HEADWATER_KAFKA__SASL_USERNAME": "headwater",
        "HEADWATER_KAFKA__SASL_PASSWORD": WRONG,
    }
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "authentication" in output.lower(), output[-2000:]
    assert WRONG not in output


def test_a_wrong_producer_password_fails_delivery_naming_authentication(
    secure_stack: Settings,
) -> None:
    wrong = secure_stack.kafka.model_copy(update={"sasl_password": _secret(WRONG)})
    producer = EventProducer(wrong, delivery_timeout_s=3)
    producer.produce("anything", b"v")
    with pytest.raises(Exception) as raised:
        producer.flush()
    assert WRONG not in str(raised.value)
    assert "authentication" in str(raised.value).lower(), str(raised.value)


def test_a_wrong_redis_password_is_refused_without_showing_it(secure_stack: Settings) -> None:
    wrong = RedisSettings(
        url=secure_stack.redis.url,
        username="headwater",
        password=_secret(WRONG),
    )
    store = RedisOnlineStore.from_settings(wrong)
    assert store.ping() is False
    in_url = RedisOnlineStore(secure_stack.redis.url.replace("://", f"://headwater:{WRONG}@"))
    fs = _any_feature_set()
    for candidate in (store, in_url):
        with pytest.raises(OnlineStoreError) as raised:
            candidate.read(fs, [("u1",)])
        message = str(raised.value)
        assert "invalid username-password pair" in message, message
        assert WRONG not in message


def _secret(value: str) -> object:
    from pydantic import SecretStr

    return SecretStr(value)


def _any_feature_set():  # type: ignore[no-untyped-def]
    from headwater.examples import EXAMPLES
    from headwater.schemas.loader import load_definitions

    return load_definitions(EXAMPLES).feature_sets[0]
