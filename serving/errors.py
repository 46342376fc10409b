"""Errors of the serving layer, each with the HTTP status it maps to."""

from __future__ import annotations

from headwater.schemas.errors import FeatureStoreError

__all__ = ["BadRequestError", "NotFoundError", "ServingError"]


class ServingError(FeatureStoreError):
    http_status = 500


class NotFoundError(ServingError, KeyError):
    """A feature set, feature or feature service that does not exist."""

    http_status = 404

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class BadRequestError(ServingError, ValueError):
    """A request that is well-formed JSON but asks for something invalid."""

    http_status = 422
