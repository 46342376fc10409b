"""The catalog: applied definitions and the Avro schema ids events on Kafka refer to.

SQLite file by default. Every process (worker, API, CLI) opens the same file, so what
``apply`` registered is what the others read.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from schemas.avro import AvroSchema
from schemas.definitions import Definitions
from schemas.errors import FeatureStoreError
from schemas.serialize import definitions_from_dict, definitions_to_dict

__all__ = ["Catalog", "CatalogError"]

_DDL = """
CREATE TABLE IF NOT EXISTS schemas (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    subject TEXT NOT NULL,
    version INTEGER NOT NULL,
    schema TEXT NOT NULL,
    UNIQUE (subject, schema)
);
CREATE TABLE IF NOT EXISTS applied (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    applied_at_ms INTEGER NOT NULL,
    body TEXT NOT NULL
);
"""


class CatalogError(FeatureStoreError):
    """The catalog is missing something a command needs."""


class Catalog:
    """Access to the catalog database; cheap to open, one connection per instance."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, timeout=30, check_same_thread=False)
        self._db.executescript(_DDL)
        self._cached: tuple[int, Definitions] | None = None

    def close(self) -> None:
        self._db.close()

    def register_schema(self, subject: str, schema: AvroSchema) -> int:
        """The id of ``schema`` under ``subject``, registering it as a new version if new."""
        text = schema.canonical
        with self._db:
            row = self._db.execute(
                "SELECT id FROM schemas WHERE subject = ? AND schema = ?", (subject, text)
            ).fetchone()
            if row:
                return int(row[0])
            (latest,) = self._db.execute(
                "SELECT COALESCE(MAX(version), 0) FROM schemas WHERE subject = ?", (subject,)
            ).fetchone()
            cur = self._db.execute(
                "INSERT INTO schemas (subject, version, schema) VALUES (?, ?, ?)",
                (subject, latest + 1, text),
            )
            return int(cur.lastrowid or 0)

    def schema_by_id(self, schema_id: int) -> AvroSchema:
        """Raises ``CatalogError`` for an id the catalog never assigned."""
        row = self._db.execute("SELECT schema FROM schemas WHERE id = ?", (schema_id,)).fetchone()
        if row is None:
            msg = f"schema id {schema_id} is not registered in the catalog {self.path}"
            raise CatalogError(msg)
        return AvroSchema.from_dict(json.loads(row[0]))

    def save_definitions(self, defs: Definitions) -> None:
        body = json.dumps(definitions_to_dict(defs), sort_keys=True)
        with self._db:
            self._db.execute(
                "INSERT INTO applied (applied_at_ms, body) VALUES (?, ?)",
                (int(time.time() * 1000), body),
            )

    def definitions(self) -> Definitions:
        """The definitions of the last ``apply``.

        Raises:
            CatalogError: nothing was applied yet.
        """
        (latest,) = self._db.execute("SELECT MAX(id) FROM applied").fetchone()
        if latest is None:
            msg = f"the catalog {self.path} is empty; run `headwater apply PATH` first"
            raise CatalogError(msg)
        if self._cached is None or self._cached[0] != latest:
            (body,) = self._db.execute("SELECT body FROM applied WHERE id = ?", (latest,)).fetchone()
            self._cached = (latest, definitions_from_dict(json.loads(body)))
        return self._cached[1]
