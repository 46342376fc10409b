"""Hiding secrets written inside connection URLs before they reach a log, an error or a repr.

``redis.url`` and ``catalog.url`` may carry a password (``redis://:pw@host/0``,
``postgresql+psycopg://user:pw@host/db``): every message that names a store shows
``redact_url(url)`` instead, so a password never leaves the settings it was written in.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["MASK", "redact_url"]

MASK = "***"
"""What stands in for a hidden password."""


def redact_url(url: str) -> str:
    """``url`` with the password of its user-info part replaced by ``***``.

    Works for any ``scheme://user:password@host...`` form (Redis, SQLAlchemy), and for a
    ``password=`` query parameter (redis-py reads one). A URL that cannot be parsed is reduced
    to its scheme, so a malformed one cannot leak either.
    """
    try:
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
    except ValueError:
        return url.split("://", 1)[0] + "://" + MASK
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostinfo = netloc.rpartition("@")
        user, has_password, _ = userinfo.partition(":")
        if has_password:
            netloc = f"{user}:{MASK}@{hostinfo}"
    if any(k.lower() == "password" for k, _ in query):
        masked = [(k, MASK if k.lower() == "password" else v) for k, v in query]
        return urlunsplit((parts.scheme, netloc, parts.path, urlencode(masked), parts.fragment))
    if netloc == parts.netloc:
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
