"""Secure connection settings: validation, the client configurations built from them, and
that no password ever shows in a repr, a settings error or a store's name."""

from __future__ import annotations

import pytest
from faust.auth import SASLCredentials

from headwater.connectors.kafka import client_config, producer_config
from headwater.connectors.kafka_security import faust_credentials, redacted_config
from headwater.connectors.online_redis import RedisOnlineStore
from headwater.connectors.redis_client import redis_client
from headwater.schemas.errors import ConfigError
from headwater.schemas.redaction import redact_url
from headwater.schemas.settings import KafkaSettings, RedisSettings, load_settings

SECRET = "s3cr3t-Pa55"


def _sasl(**extra: object) -> KafkaSettings:
    return KafkaSettings(
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="hw",
        sasl_password=SECRET,  # type: ignore[arg-type]  # pydantic turns it into SecretStr
        **extra,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://:pw@h:6379/0", "redis://:***@h:6379/0"),
        ("redis://u:pw@h/0", "redis://u:***@h/0"),
        ("redis://u@h/0", "redis://u@h/0"),
        ("redis://h:6379/0", "redis://h:6379/0"),
        ("postgresql+psycopg://u:p%40ss@db:5432/cat", "postgresql+psycopg://u:***@db:5432/cat"),
        ("redis://h/0?password=pw&db=1", "redis://h/0?password=%2A%2A%2A&db=1"),
        ("rediss://u:a:b@c@h/0", "rediss://u:***@h/0"),
    ],
)
def test_redact_url_hides_only_the_password(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_sasl_settings_reach_every_librdkafka_client_config() -> None:
    kafka = _sasl()
    base = client_config(kafka)
    assert base == {
        "bootstrap.servers": "127.0.0.1:9092",
        "log_level": 4,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "hw",
        "sasl.password": SECRET,
    }
    produced = producer_config(kafka, delivery_timeout_s=5, linger_ms=1)
    assert {k: produced[k] for k in base} == base
    assert redacted_config(base)["sasl.password"] == "***"


def test_plaintext_config_has_no_security_keys() -> None:
    assert client_config(KafkaSettings()) == {"bootstrap.servers": "127.0.0.1:9092", "log_level": 4}
    assert faust_credentials(client_config(KafkaSettings())) is None


def test_tls_files_reach_librdkafka(tmp_path: object) -> None:
    kafka = KafkaSettings(
        security_protocol="SSL",
        ssl_ca_location="/etc/ca.pem",  # type: ignore[arg-type]
        ssl_certificate_location="/etc/c.pem",  # type: ignore[arg-type]
        ssl_key_location="/etc/k.pem",  # type: ignore[arg-type]
        ssl_key_password=SECRET,  # type: ignore[arg-type]
    )
    config = client_config(kafka)
    assert config["security.protocol"] == "SSL"
    assert config["ssl.ca.location"] == "/etc/ca.pem"
    assert config["ssl.certificate.location"] == "/etc/c.pem"
    assert config["ssl.key.location"] == "/etc/k.pem"
    assert config["ssl.key.password"] == SECRET
    assert redacted_config(config)["ssl.key.password"] == "***"


def test_worker_credentials_are_derived_from_the_same_config() -> None:
    credentials = faust_credentials(client_config(_sasl()))
    assert isinstance(credentials, SASLCredentials)
    assert (credentials.username, credentials.password) == ("hw", SECRET)
    assert credentials.mechanism.value == "SCRAM-SHA-512"
    assert credentials.protocol.value == "SASL_PLAINTEXT"
    assert SECRET not in repr(credentials)


@pytest.mark.parametrize(
    ("kafka", "named"),
    [
        ({"security_protocol": "SASL_SSL"}, "sasl_mechanism, sasl_username, sasl_password"),
        (
            {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN"},
            "HEADWATER_KAFKA__SASL_USERNAME",
        ),
        ({"sasl_mechanism": "PLAIN"}, "HEADWATER_KAFKA__SECURITY_PROTOCOL=SASL_PLAINTEXT"),
        ({"sasl_username": "u"}, "sasl_username set but security_protocol is PLAINTEXT"),
        ({"ssl_ca_location": "/ca.pem"}, "HEADWATER_KAFKA__SECURITY_PROTOCOL=SSL"),
        (
            {"security_protocol": "SSL", "ssl_certificate_location": "/c.pem"},
            "ssl_certificate_location and ssl_key_location go together",
        ),
        ({"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "GSSAPI"}, "sasl_mechanism"),
    ],
)
def test_half_configured_kafka_security_is_refused_naming_the_fix(
    kafka: dict[str, str], named: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(kafka=kafka)
    assert named in str(raised.value)
    assert "kafka" in str(raised.value)


@pytest.mark.parametrize(
    ("redis", "named"),
    [
        ({"url": "redis://h/0", "ssl_ca_certs": "/ca.pem"}, "use a rediss:// URL"),
        ({"url": f"redis://:{SECRET}@h/0", "password": "x"}, "remove it from the URL"),
        ({"username": "hw"}, "HEADWATER_REDIS__PASSWORD"),
        ({"url": f"http://u:{SECRET}@h/0"}, "redis.url"),
    ],
)
def test_bad_redis_security_is_refused_without_showing_the_password(
    redis: dict[str, str], named: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(redis=redis)
    text = str(raised.value)
    assert named in text
    assert SECRET not in text
    assert raised.value.__cause__ is None  # pydantic's report quotes inputs: not chained


def test_catalog_password_goes_into_the_url_only_for_sqlalchemy() -> None:
    settings = load_settings(
        catalog={"url": "postgresql+psycopg://hw@db:5432/catalog", "password": "p@ss:w/rd"}
    )
    assert settings.catalog_url == "postgresql+psycopg://hw:p%40ss%3Aw%2Frd@db:5432/catalog"
    assert "p@ss" not in repr(settings)
    from sqlalchemy.engine import make_url

    assert make_url(settings.catalog_url).password == "p@ss:w/rd"


@pytest.mark.parametrize(
    ("catalog", "named"),
    [
        ({"password": "pw"}, "HEADWATER_CATALOG__URL"),
        ({"url": f"postgresql://u:{SECRET}@h/db", "password": "x"}, "HEADWATER_CATALOG__PASSWORD"),
    ],
)
def test_bad_catalog_password_settings_are_refused(catalog: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(catalog=catalog)
    assert named in str(raised.value)
    assert SECRET not in str(raised.value)


def test_repr_of_settings_never_shows_a_password() -> None:
    settings = load_settings(
        kafka={
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "PLAIN",
            "sasl_username": "hw",
            "sasl_password": SECRET,
        },
        redis={"url": f"redis://hw:{SECRET}@127.0.0.1:6379/0"},
        catalog={"url": f"postgresql+psycopg://hw:{SECRET}@db/catalog"},
    )
    for text in (repr(settings), str(settings), repr(settings.redis), repr(settings.catalog)):
        assert SECRET not in text
    assert "redis://hw:***@127.0.0.1:6379/0" in repr(settings)


def test_redis_client_passes_user_password_and_tls() -> None:
    settings = RedisSettings(
        url="rediss://cache.internal:6380/2",
        username="hw",
        password=SECRET,  # type: ignore[arg-type]
        ssl_ca_certs="/etc/ca.pem",  # type: ignore[arg-type]
    )
    client = redis_client(settings, socket_timeout=1.5)
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["username"], kwargs["password"]) == ("hw", SECRET)
    assert kwargs["ssl_ca_certs"] == "/etc/ca.pem"
    assert kwargs["socket_timeout"] == 1.5
    assert kwargs["db"] == 2
    assert client.connection_pool.connection_class.__name__ == "SSLConnection"


def test_online_store_names_its_server_without_the_password() -> None:
    store = RedisOnlineStore(f"redis://hw:{SECRET}@127.0.0.1:1/0")
    assert store.url == "redis://hw:***@127.0.0.1:1/0"
    by_settings = RedisOnlineStore.from_settings(
        RedisSettings(url="redis://127.0.0.1:1/0", username="hw", password=SECRET)  # type: ignore[arg-type]
    )
    assert SECRET not in by_settings.url
    assert by_settings._client.connection_pool.connection_kwargs["password"] == SECRET


def test_async_redis_client_has_the_same_identity() -> None:
    from headwater.connectors.redis_client import async_redis_client

    settings = RedisSettings(
        url="redis://127.0.0.1:1/3",
        username="hw",
        password=SECRET,  # type: ignore[arg-type]
    )
    client = async_redis_client(settings, socket_timeout=1.0)
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["username"], kwargs["password"], kwargs["db"]) == ("hw", SECRET, 3)
    assert kwargs["socket_timeout"] == 1.0
