"""Where the offline store lives: a local directory or an object-store URI, with the
deltalake storage options (credentials included) that reach it.

One value, made from settings by ``Settings.offline_location``, handed to every reader and
writer of Delta tables and of the files kept beside them (training-set inputs), so a local
directory and ``s3://bucket/prefix`` go through the same code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, SecretStr, model_validator

__all__ = ["OBJECT_STORE_SCHEMES", "OfflineLocation", "OfflineSettings"]

OBJECT_STORE_SCHEMES = ("s3", "s3a", "gs", "az", "abfs", "abfss")
"""URI schemes of the object stores deltalake writes to (S3 and compatible, GCS, Azure)."""


@dataclass(frozen=True)
class OfflineLocation:
    """``root`` (a local absolute path or a URI, without a trailing slash) and the storage
    options for it. The options may hold secrets: ``repr`` never shows them."""

    root: str
    storage_options: Mapping[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, where: OfflineLocation | Path | str) -> OfflineLocation:
        """A location from itself, or from a local directory."""
        if isinstance(where, OfflineLocation):
            return where
        return cls(str(Path(where)))

    @property
    def is_local(self) -> bool:
        return "://" not in self.root or self.root.startswith("file://")

    @property
    def local_path(self) -> Path:
        """The directory, for a local location."""
        return Path(self.root.removeprefix("file://"))

    def uri(self, *parts: str) -> str:
        """The URI (or path) of ``parts`` below the root."""
        if self.is_local:
            return str(self.local_path.joinpath(*parts))
        return "/".join([self.root, *parts])

    def options(self) -> dict[str, str] | None:
        """deltalake's ``storage_options`` argument (``None`` when there are none)."""
        return dict(self.storage_options) or None


_SECRET_WORDS = (
    "SECRET",
    "PASSWORD",
    "TOKEN",
    "ACCOUNT_KEY",
    "ACCESS_KEY",
    "SAS_KEY",
    "SERVICE_ACCOUNT_KEY",
)


class OfflineSettings(BaseModel):
    """Where the Delta tables (and the files kept beside them) live (``Settings.offline``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str | None = None
    """Unset: ``<home>/offline`` on local disk. Otherwise a directory or an object-store URI:
    ``s3://bucket/prefix`` (AWS S3, MinIO, any S3-compatible server), ``gs://``, ``az://``,
    ``abfss://``."""
    storage_options: dict[str, str] = {}
    """deltalake storage options that are not secret, e.g. ``AWS_REGION``,
    ``AWS_ENDPOINT_URL`` and ``AWS_ALLOW_HTTP`` for an S3-compatible server
    (``HEADWATER_OFFLINE__STORAGE_OPTIONS__AWS_REGION=eu-west-1``)."""
    secret_options: dict[str, SecretStr] = {}
    """Storage options that are secrets (``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``,
    ``AZURE_STORAGE_ACCOUNT_KEY``...): never logged nor shown. Pass them in the environment
    (``HEADWATER_OFFLINE__SECRET_OPTIONS__AWS_SECRET_ACCESS_KEY``), never as an argument."""

    @model_validator(mode="after")
    def _check(self) -> OfflineSettings:
        if self.url is not None and "://" in self.url:
            scheme = self.url.split("://", 1)[0].lower()
            if scheme not in (*OBJECT_STORE_SCHEMES, "file"):
                msg = (
                    f"url scheme {scheme!r} is not one the offline store can write to: use "
                    f"{', '.join(s + '://' for s in OBJECT_STORE_SCHEMES)}, file:// or a directory"
                )
                raise ValueError(msg)
            if not self.url.split("://", 1)[1].strip("/"):
                msg = f"url {self.url!r} names no bucket or container: use e.g. s3://bucket/prefix"
                raise ValueError(msg)
        secret = sorted(
            k for k in self.storage_options if any(w in k.upper() for w in _SECRET_WORDS)
        )
        if secret:
            msg = (
                f"storage_options {secret} look secret: move them to secret_options "
                f"(HEADWATER_OFFLINE__SECRET_OPTIONS__{secret[0].upper()}), which is never shown"
            )
            raise ValueError(msg)
        both = sorted(
            {k.upper() for k in self.storage_options} & {k.upper() for k in self.secret_options}
        )
        if both:
            msg = f"{both} set both in storage_options and secret_options: keep them only in secret_options"
            raise ValueError(msg)
        return self
