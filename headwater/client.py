"""A Python client of a Headwater API, for notebooks and services that reach it over HTTP.

``FeatureStore`` (``headwater.sdk``) talks to the stores directly and needs their
credentials; a shared deployment gives most people an API key instead. This client sends
that key (the ``api_key`` argument, else ``security.api_key`` from the settings, i.e.
``HEADWATER_SECURITY__API_KEY``) with every request, and raises the API's errors as
``ApiError`` with the status, the detail sentence and the fields at fault.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Self

import httpx

from headwater.schemas.errors import FeatureStoreError
from headwater.schemas.settings import Settings, load_settings

__all__ = ["ApiError", "HeadwaterClient"]


class ApiError(FeatureStoreError):
    """The API answered an error: ``status``, its ``detail`` and ``errors`` (field, reason)."""

    def __init__(self, status: int, detail: str, errors: Sequence[Mapping[str, Any]]) -> None:
        fields = ", ".join(str(e.get("field")) for e in errors[:5] if e.get("field"))
        super().__init__(f"HTTP {status}: {detail}" + (f" (fields: {fields})" if fields else ""))
        self.status = status
        self.detail = detail
        self.errors = list(errors)


def _lookup_body(
    entities: Mapping[str, Sequence[Any]],
    features: Sequence[str] | None,
    feature_service: str | None,
    request: Mapping[str, Sequence[Any]] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"entities": {k: list(v) for k, v in entities.items()}}
    if request is not None:
        body["request"] = {k: list(v) for k, v in request.items()}
    if features is not None:
        body["features"] = list(features)
    if feature_service is not None:
        body["feature_service"] = feature_service
    return body


class HeadwaterClient:
    """Online and historical lookups and pushes over a Headwater API.

    Args:
        url: the API's base URL; default ``http://<serving.host>:<serving.port>``.
        api_key: the key to send; default ``security.api_key`` of the settings.
        settings: where the defaults come from; default this directory's settings.
        timeout_s: per request.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        api_key: str | None = None,
        settings: Settings | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        settings = settings or load_settings()
        if url is None:
            host = settings.serving.host
            host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
            url = f"http://{host}:{settings.serving.port}"
        if api_key is None and settings.security.api_key is not None:
            api_key = settings.security.api_key.get_secret_value()
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout_s)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _post(self, path: str, body: Mapping[str, Any]) -> Any:
        response = self._http.post(path, json=body)
        if response.status_code >= 400:
            try:
                payload = response.json()
            except ValueError:
                payload = {"detail": response.text[:500]}
            detail = payload.get("detail") or payload.get("message") or response.reason_phrase
            raise ApiError(response.status_code, str(detail), payload.get("errors") or [])
        return response.json()

    def get_online_features(
        self,
        entities: Mapping[str, Sequence[Any]],
        *,
        features: Sequence[str] | None = None,
        feature_service: str | None = None,
        request: Mapping[str, Sequence[Any]] | None = None,
    ) -> dict[str, Any]:
        """``POST /v1/online-features``: the answer as the API gives it (``results`` per
        entity with ``values`` and ``statuses``).

        ``request``: the fields request-time features read, one value per entity row
        (``{"amount": [12.5, 3.0]}``).
        """
        body = _lookup_body(entities, features, feature_service, request)
        result: dict[str, Any] = self._post("/v1/online-features", body)
        return result

    def get_historical_features(
        self,
        entities: Mapping[str, Sequence[Any]],
        *,
        features: Sequence[str] | None = None,
        feature_service: str | None = None,
        timestamp_column: str = "event_timestamp",
    ) -> dict[str, Any]:
        """``POST /v1/historical-features``: point-in-time values per label row; the
        request fields of request-time features are columns of ``entities``."""
        body = _lookup_body(entities, features, feature_service)
        body["timestamp_column"] = timestamp_column
        result: dict[str, Any] = self._post("/v1/historical-features", body)
        return result

    def push(self, source: str, events: Sequence[Mapping[str, Any]]) -> int:
        """``POST /v1/push/{source}``: how many events Kafka acknowledged (all or an error)."""
        result = self._post(f"/v1/push/{source}", {"events": list(events)})
        return int(result["accepted"])
