"""What the catalog returns besides definitions, and its error."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from headwater.schemas.errors import FeatureStoreError

__all__ = ["AuditEntry", "CatalogError", "SchemaVersion", "TrainingSetRecord"]


class CatalogError(FeatureStoreError):
    """The catalog is missing something a command needs."""


@dataclass(frozen=True)
class SchemaVersion:
    id: int
    subject: str
    version: int
    schema: str


@dataclass(frozen=True)
class AuditEntry:
    at_ms: int
    action: str
    target: str
    detail: dict[str, Any]
    actor: str = ""
    """``key:<id>:<name>`` (an API key), ``cli:<user>@<host>``, or ``''`` (before 0002)."""
    outcome: str = "ok"
    """``ok``, or ``refused`` / ``failed``."""

    def to_dict(self) -> dict[str, Any]:
        when = datetime.fromtimestamp(self.at_ms / 1000, UTC)
        return {
            "at": when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{self.at_ms % 1000:03d}Z",
            "at_ms": self.at_ms,
            "action": self.action,
            "target": self.target,
            "actor": self.actor,
            "outcome": self.outcome,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class TrainingSetRecord:
    """What rebuilds a training set bit for bit: pinned feature references (``set@vN:f``),
    the Delta version read per feature-set version, and the entity input's fingerprint."""

    name: str
    features: tuple[str, ...]
    table_versions: dict[str, int]
    entity_fingerprint: str
    timestamp_column: str
    rows: int
    created_at_ms: int
    as_of: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "features": list(self.features),
            "table_versions": self.table_versions,
            "entity_fingerprint": self.entity_fingerprint,
            "timestamp_column": self.timestamp_column,
            "rows": self.rows,
            "created_at_ms": self.created_at_ms,
            "as_of": self.as_of,
        }

    @classmethod
    def from_dict(cls, body: dict[str, Any]) -> TrainingSetRecord:
        return cls(**{**body, "features": tuple(body["features"])})
