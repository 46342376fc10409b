"""``headwater up --secure``: the identities of the local SASL Kafka and ACL Redis.

Three identities, with passwords from :mod:`headwater.stack.secrets`:

- ``headwater-admin`` (PLAIN): the broker's own identity, written into its server.properties
  (0600); ``up`` uses it to create the client user and to check the broker is ready.
- ``headwater`` (SCRAM-SHA-512): the Kafka user every Headwater client logs in as; created
  with ``AdminClient.alter_user_scram_credentials`` once the broker runs, so its password
  never appears on a command line (``kafka-storage format --add-scram`` would put it there).
- ``headwater`` (Redis ACL user): the only Redis user; ``default`` is switched off.

``secure_settings`` gives the settings clients need; ``client_exports`` prints them as
shell lines that read each password from its file instead of showing it.
"""

from __future__ import annotations

from confluent_kafka import KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # public API, not re-exported in the stubs
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)
from pydantic import SecretStr

from headwater.connectors.kafka import admin_client
from headwater.schemas.settings import KafkaSettings, Settings
from headwater.stack.errors import ServiceStartError
from headwater.stack.secrets import secret_path, stack_secret

__all__ = [
    "KAFKA_ADMIN_USER",
    "KAFKA_CLIENT_USER",
    "REDIS_USER",
    "admin_kafka",
    "client_exports",
    "ensure_scram_user",
    "secure_settings",
]

KAFKA_ADMIN_USER = "headwater-admin"
KAFKA_CLIENT_USER = "headwater"
REDIS_USER = "headwater"
_SCRAM_ITERATIONS = 8192


def secure_settings(settings: Settings) -> Settings:
    """``settings`` with the Kafka and Redis identities of the local secure stack filled in
    (passwords generated on first use); other settings unchanged."""
    kafka = settings.kafka.model_copy(
        update={
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": KAFKA_CLIENT_USER,
            "sasl_password": _secret(settings, "kafka-client"),
        }
    )
    redis = settings.redis.model_copy(
        update={"username": REDIS_USER, "password": _secret(settings, "redis")}
    )
    stack = settings.stack.model_copy(update={"secure": True})
    return settings.model_copy(update={"kafka": kafka, "redis": redis, "stack": stack})


def _secret(settings: Settings, name: str) -> SecretStr:
    return SecretStr(stack_secret(settings, name))


def admin_kafka(settings: Settings) -> KafkaSettings:
    """The broker's own PLAIN identity, for ``up``'s readiness checks and user creation."""
    return KafkaSettings.model_validate(
        {
            **settings.kafka.model_dump(),
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "PLAIN",
            "sasl_username": KAFKA_ADMIN_USER,
            "sasl_password": stack_secret(settings, "kafka-admin"),
        }
    )


def ensure_scram_user(settings: Settings) -> None:
    """Create (or reset to the stored password) the SCRAM-SHA-512 client user.

    An upsert, so every ``up`` leaves the user matching ``kafka-client.password``.

    Raises:
        ServiceStartError: the broker refused or did not answer.
    """
    password = stack_secret(settings, "kafka-client").encode()
    admin = admin_client(admin_kafka(settings))
    upsert = UserScramCredentialUpsertion(
        KAFKA_CLIENT_USER,
        ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, _SCRAM_ITERATIONS),
        password,
    )
    futures = admin.alter_user_scram_credentials([upsert], request_timeout=30)
    try:
        for future in futures.values():
            future.result(timeout=30)
    except KafkaException as exc:
        msg = (
            f"creating the Kafka SCRAM user {KAFKA_CLIENT_USER!r} failed: {exc.args[0].str()}; "
            "run `headwater down` and `headwater up --secure` again"
        )
        raise ServiceStartError(msg) from None


def client_exports(settings: Settings) -> list[str]:
    """Shell lines that point Headwater clients at the secure stack; passwords are read
    from their files by the shell (``$(cat ...)``), never printed."""
    kafka_file = secret_path(settings, "kafka-client")
    redis_file = secret_path(settings, "redis")
    return [
        "export HEADWATER_STACK__SECURE=true",
        "export HEADWATER_KAFKA__SECURITY_PROTOCOL=SASL_PLAINTEXT",
        "export HEADWATER_KAFKA__SASL_MECHANISM=SCRAM-SHA-512",
        f"export HEADWATER_KAFKA__SASL_USERNAME={KAFKA_CLIENT_USER}",
        f'export HEADWATER_KAFKA__SASL_PASSWORD="$(cat {kafka_file})"',
        f"export HEADWATER_REDIS__USERNAME={REDIS_USER}",
        f'export HEADWATER_REDIS__PASSWORD="$(cat {redis_file})"',
    ]
