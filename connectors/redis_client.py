"""The one way Headwater connects to Redis: URL, ACL user, password and TLS from settings.

Every ``redis.Redis`` of the project (online store, ``headwater up``'s readiness check, the
demo) is made by ``redis_client``, so a password or TLS setting applies to all of them,
and messages name the server by ``redis_display``, which never shows a password.
"""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio

from headwater.schemas.redaction import redact_url
from headwater.schemas.settings import RedisSettings

__all__ = ["async_redis_client", "redis_client", "redis_display"]


def redis_client(settings: RedisSettings, **options: Any) -> redis.Redis:
    """A client for ``settings.url`` authenticating as ``username``/``password`` and, for
    ``rediss://`` URLs, verifying the server with the ``ssl_*`` files.

    ``options`` are further ``redis.Redis`` arguments (timeouts, ``decode_responses``).
    """
    return redis.Redis.from_url(settings.url, **_connection_options(settings, options))


def async_redis_client(settings: RedisSettings, **options: Any) -> redis.asyncio.Redis:
    """``redis_client``'s asyncio twin (same identity and TLS), for code on an event loop."""
    return redis.asyncio.Redis.from_url(settings.url, **_connection_options(settings, options))


def _connection_options(settings: RedisSettings, options: dict[str, Any]) -> dict[str, Any]:
    """``from_url`` keyword arguments: ``options`` plus the credentials and TLS files."""
    kwargs: dict[str, Any] = dict(options)
    if settings.username is not None:
        kwargs["username"] = settings.username
    if settings.password is not None:
        kwargs["password"] = settings.password.get_secret_value()
    if settings.url.startswith("rediss://"):
        kwargs["ssl_check_hostname"] = settings.ssl_check_hostname
        if settings.ssl_ca_certs is not None:
            kwargs["ssl_ca_certs"] = str(settings.ssl_ca_certs)
        if settings.ssl_certfile is not None:
            kwargs["ssl_certfile"] = str(settings.ssl_certfile)
            kwargs["ssl_keyfile"] = str(settings.ssl_keyfile)
    return kwargs


def redis_display(settings: RedisSettings) -> str:
    """How messages name the server: its URL with any password masked, and the ACL user."""
    shown = redact_url(settings.url)
    return f"{shown} (user {settings.username})" if settings.username else shown
