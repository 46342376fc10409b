"""Kafka authentication and encryption, from ``KafkaSettings`` to each client library's form.

``security_config`` is the librdkafka form (confluent-kafka producers, consumers, admin);
``connectors.kafka.client_config`` puts it into every confluent-kafka client's
configuration. ``faust_credentials`` derives the faust/aiokafka form (the worker's consumer)
from that same configuration, so both libraries always authenticate the same way and a
setting cannot be forgotten in one of them.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any

from faust.auth import SASLCredentials, SSLCredentials
from faust.types.auth import CredentialsT

from headwater.connectors.errors import KafkaUnavailableError
from headwater.schemas.redaction import MASK
from headwater.schemas.settings import KafkaSettings

__all__ = [
    "SECRET_KEYS",
    "faust_credentials",
    "is_login_error",
    "login_problem",
    "probe_login",
    "redacted_config",
    "security_config",
]

SECRET_KEYS = frozenset({"sasl.password", "ssl.key.password"})
"""librdkafka properties whose values are secrets (``redacted_config`` masks them)."""


def security_config(kafka: KafkaSettings) -> dict[str, Any]:
    """The librdkafka properties of ``kafka``'s protocol, SASL identity and TLS files.

    Empty for the default ``PLAINTEXT``. Holds the plain passwords: hand it only to a client
    constructor, and log ``redacted_config`` of it.
    """
    config: dict[str, Any] = {}
    if kafka.security_protocol == "PLAINTEXT":
        return config
    config["security.protocol"] = kafka.security_protocol
    if kafka.sasl_mechanism is not None:
        config["sasl.mechanism"] = kafka.sasl_mechanism
    if kafka.sasl_username is not None:
        config["sasl.username"] = kafka.sasl_username
    if kafka.sasl_password is not None:
        config["sasl.password"] = kafka.sasl_password.get_secret_value()
    files = {
        "ssl.ca.location": kafka.ssl_ca_location,
        "ssl.certificate.location": kafka.ssl_certificate_location,
        "ssl.key.location": kafka.ssl_key_location,
    }
    config.update({key: str(path) for key, path in files.items() if path is not None})
    if kafka.ssl_key_password is not None:
        config["ssl.key.password"] = kafka.ssl_key_password.get_secret_value()
    return config


def redacted_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` with every secret value masked, for logs and error messages."""
    return {key: MASK if key in SECRET_KEYS else value for key, value in config.items()}


def _ssl_context(config: Mapping[str, Any]) -> ssl.SSLContext:
    """The TLS context aiokafka needs for the same CA, certificate and key as librdkafka."""
    try:
        context = ssl.create_default_context(cafile=config.get("ssl.ca.location"))
        if "ssl.certificate.location" in config:
            context.load_cert_chain(
                config["ssl.certificate.location"],
                config["ssl.key.location"],
                password=config.get("ssl.key.password"),
            )
    except (OSError, ssl.SSLError) as exc:
        # The message names the file; the key password is never part of it.
        msg = (
            f"cannot load the Kafka TLS files ({exc.__class__.__name__}: {exc.strerror or exc}): "
            "check kafka.ssl_ca_location, ssl_certificate_location, ssl_key_location and "
            "ssl_key_password"
        )
        raise KafkaUnavailableError(msg) from None
    return context


def faust_credentials(config: Mapping[str, Any]) -> CredentialsT | None:
    """faust's ``broker_credentials`` for a librdkafka ``config`` (``client_config``'s).

    ``None`` for plaintext. Derived from the librdkafka properties rather than from the
    settings, so the worker's aiokafka consumer cannot drift from the other clients.
    """
    protocol = config.get("security.protocol", "PLAINTEXT")
    if protocol == "PLAINTEXT":
        return None
    context = _ssl_context(config) if protocol.endswith("SSL") else None
    if protocol == "SSL" and context is not None:
        return SSLCredentials(context)
    return SASLCredentials(
        username=config["sasl.username"],
        password=config["sasl.password"],
        mechanism=config["sasl.mechanism"],
        ssl_context=context,
    )


_LOGIN_ERRORS = frozenset({"_AUTHENTICATION", "SASL_AUTHENTICATION_FAILED"})


def is_login_error(error: Any) -> bool:
    """Whether a librdkafka ``KafkaError`` says the broker refused our credentials."""
    try:
        return str(error.name()) in _LOGIN_ERRORS
    except AttributeError:
        return False


def login_problem(kafka: KafkaSettings, detail: str) -> str:
    """The message for refused credentials: who tried, what the broker said, what to check.

    ``detail`` is librdkafka's error text, which names the mechanism but never the password.
    """
    who = f"user {kafka.sasl_username!r}" if kafka.sasl_username else "this client"
    return (
        f"Kafka at {kafka.bootstrap_servers} refused the login of {who} ({detail}): check "
        "kafka.sasl_username, kafka.sasl_password and kafka.sasl_mechanism "
        "(HEADWATER_KAFKA__SASL_*)"
    )


def probe_login(config: Mapping[str, Any], timeout_s: float) -> str | None:
    """librdkafka's text of the error a fresh client meets when it connects with ``config``
    (``None`` when none). Only called after a failure, to tell refused credentials from an
    absent broker, so its short-lived client costs nothing on the healthy path."""
    from confluent_kafka import Consumer, KafkaException

    errors: list[Any] = []
    probe = Consumer(
        {
            **config,
            "group.id": "headwater.login-probe",
            "error_cb": errors.append,
            "logger": _QUIET,
        }
    )
    try:
        probe.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        errors.append(exc.args[0])
    finally:
        probe.close()
    for error in errors:
        if is_login_error(error):
            return str(error.str())
    return None


def _quiet_logger() -> Any:
    import logging

    quiet = logging.getLogger("headwater.kafka.login-probe")
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
    return quiet


_QUIET = _quiet_logger()
