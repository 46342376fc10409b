"""``headwater up --secure`` configuration: the broker's SASL listeners, redis.conf's ACL
user, and password files that only their owner can read."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from headwater.schemas.settings import load_settings
from headwater.stack.errors import StackConfigError
from headwater.stack.kafka_config import render_server_properties
from headwater.stack.redis import RedisPaths, render_redis_conf
from headwater.stack.secrets import secret_path, stack_secret
from headwater.stack.secure import client_exports, secure_settings


def _props(text: str) -> dict[str, str]:
    return dict(
        line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#")
    )


def test_secure_broker_requires_sasl_on_every_listener() -> None:
    props = _props(
        render_server_properties(
            host="127.0.0.1",
            port=19092,
            controller_port=19093,
            data_dir=Path("/d"),
            sasl_admin=("headwater-admin", "pw123"),
        )
    )
    assert props["listeners"] == "SASL_PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["listener.security.protocol.map"] == (
        "CONTROLLER:SASL_PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT"
    )
    assert props["sasl.enabled.mechanisms"] == "PLAIN,SCRAM-SHA-512"
    assert props["sasl.mechanism.inter.broker.protocol"] == "PLAIN"
    assert props["sasl.mechanism.controller.protocol"] == "PLAIN"
    jaas = props["listener.name.sasl_plaintext.plain.sasl.jaas.config"]
    assert 'username="headwater-admin" password="pw123" user_headwater-admin="pw123"' in jaas
    assert props["listener.name.controller.plain.sasl.jaas.config"] == jaas
    assert (
        "ScramLoginModule" in props["listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config"]
    )


def test_plain_broker_is_unchanged_without_sasl() -> None:
    props = _props(
        render_server_properties(
            host="127.0.0.1", port=19092, controller_port=19093, data_dir=Path("/d")
        )
    )
    assert props["listeners"].startswith("PLAINTEXT://")
    assert not any(key.startswith("sasl") or "jaas" in key for key in props)


def test_secrets_are_generated_once_with_mode_0600(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path)
    first = stack_secret(settings, "redis")
    assert len(first) >= 32
    assert stack_secret(settings, "redis") == first
    path = secret_path(settings, "redis")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stack_secret(settings, "kafka-client") != first


def test_a_readable_secret_file_is_refused(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path)
    stack_secret(settings, "redis")
    secret_path(settings, "redis").chmod(0o644)
    with pytest.raises(StackConfigError, match="chmod 600"):
        stack_secret(settings, "redis")


def test_secure_settings_and_redis_conf_use_the_stored_passwords(tmp_path: Path) -> None:
    base = load_settings(home=tmp_path, redis={"url": "redis://127.0.0.1:16379/0"})
    settings = secure_settings(base)
    kafka_pw = stack_secret(base, "kafka-client")
    redis_pw = stack_secret(base, "redis")
    assert settings.kafka.security_protocol == "SASL_PLAINTEXT"
    assert settings.kafka.sasl_mechanism == "SCRAM-SHA-512"
    assert settings.kafka.sasl_password is not None
    assert settings.kafka.sasl_password.get_secret_value() == kafka_pw
    assert settings.redis.username == "headwater"
    conf = render_redis_conf(settings, RedisPaths(tmp_path / "r", tmp_path / "r.pid"))
    assert "user default off" in conf
    assert f'user headwater on ">{redis_pw}" ~* &* +@all' in conf
    assert "port 16379" in conf
    assert 'appendfsync "always"' in conf
    exports = "\n".join(client_exports(settings))
    assert kafka_pw not in exports and redis_pw not in exports
    assert f"$(cat {secret_path(base, 'kafka-client')})" in exports


def test_a_url_password_becomes_requirepass_in_the_file(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path, redis={"url": "redis://:pa55@127.0.0.1:16379/0"})
    conf = render_redis_conf(settings, RedisPaths(tmp_path / "r", tmp_path / "r.pid"))
    assert 'requirepass "pa55"' in conf
    assert "user default off" not in conf
