"""The catalog: definitions with their versions, schema ids, and an audit trail.

SQLite file by default (``<home>/catalog.db``), PostgreSQL by URL
(``postgresql+psycopg://user@host/db``); SQLAlchemy Core keeps one code path for both. Every
process (worker, API, CLI) opens the same database, so what ``apply`` registered is what the
others read.

Feature sets are versioned: each version is a row with its own definition and a status
(``active`` or ``retired``). Other objects (entities, sources, feature services) have one
row each, updated in place.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from headwater.connectors.catalog.audit import (
    DEFINITION_ACTIONS,
    AuditQuery,
    audit_row,
    read_audit,
)
from headwater.connectors.catalog.erasures import Erasures
from headwater.connectors.catalog.keys import KeyStore
from headwater.connectors.catalog.migrate import bring_to_head
from headwater.connectors.catalog.records import (
    AuditEntry,
    CatalogError,
    SchemaVersion,
    TrainingSetRecord,
)
from headwater.connectors.catalog.tables import ACTIVE, RETIRED
from headwater.connectors.catalog.tables import audit as _audit
from headwater.connectors.catalog.tables import objects as _objects
from headwater.connectors.catalog.tables import schema_texts as _schema_texts
from headwater.connectors.catalog.tables import subject_versions as _subject_versions
from headwater.connectors.catalog.tables import topic_epochs as _topic_epochs
from headwater.connectors.catalog.tables import training_sets as _training_sets
from headwater.schemas.avro import AvroSchema
from headwater.schemas.definitions import Definitions, FeatureSet
from headwater.schemas.redaction import redact_url
from headwater.schemas.serialize import (
    definitions_from_dict,
    entity_to_dict,
    feature_service_to_dict,
    feature_set_to_dict,
    source_to_dict,
)

__all__ = ["Catalog"]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Catalog:
    """Access to the catalog database. Cheap to open; keeps a small connection pool."""

    def __init__(self, url: str) -> None:
        # What the catalog is called in messages: never with its password.
        self.url = redact_url(url)
        kwargs: dict[str, Any] = {}
        self._files: tuple[Path, ...] = ()
        if url.startswith("sqlite"):
            path = url.removeprefix("sqlite:///")
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                self._files = (Path(path), Path(f"{path}-wal"), Path(f"{path}-journal"))
            kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
        self._engine = sa.create_engine(url, **kwargs)
        try:
            bring_to_head(self._engine)
        except BaseException:
            self._engine.dispose()
            raise
        self._cached: tuple[Any, Definitions] | None = None
        self._checked_at = 0.0

    def close(self) -> None:
        self._engine.dispose()

    def change_token(self) -> tuple[int, ...] | None:
        """A value that changes whenever the database is written, where that shows without a
        query: SQLite's file change counter (header bytes 24-27, bumped by every commit; file
        times alone are too coarse for two commits a millisecond apart) with the files' sizes
        and times, in a few microseconds. ``None`` for a server database, whose readers fall
        back to re-reading after a time."""
        if not self._files:
            return None
        token: list[int] = []
        try:
            with self._files[0].open("rb") as db:
                token.append(int.from_bytes(os.pread(db.fileno(), 4, 24), "big"))
        except FileNotFoundError:
            token.append(-1)
        for file in self._files:
            try:
                st = file.stat()
            except FileNotFoundError:
                token += (0, 0)
                continue
            token += (st.st_mtime_ns, st.st_size)
        return tuple(token)

    @property
    def erasures(self) -> Erasures:
        """Right-to-erasure requests (``connectors/catalog/erasures.py``)."""
        return Erasures(self._engine)

    @contextmanager
    def _tx(self) -> Iterator[sa.Connection]:
        with self._engine.begin() as conn:
            yield conn

    # --- schemas -------------------------------------------------------------------------

    def register_schema(self, subject: str, schema: AvroSchema) -> int:
        """The id of ``schema``, registered under ``subject`` as its next version if new there.

        Ids are global per schema text, as in Confluent's registry: the same schema under two
        subjects has one id. Compatibility is checked by the caller
        (``schemas.compatibility``); this only stores.
        """
        text = schema.canonical
        fingerprint = hashlib.sha256(text.encode()).hexdigest()
        with self._tx() as conn:
            row = conn.execute(
                sa.select(_schema_texts.c.id).where(_schema_texts.c.fingerprint == fingerprint)
            ).first()
            if row is None:
                result = conn.execute(
                    sa.insert(_schema_texts).values(fingerprint=fingerprint, schema=text)
                )
                schema_id = int(result.inserted_primary_key[0])  # type: ignore[index]  # one-column key
            else:
                schema_id = int(row[0])
            versions = _subject_versions.c
            known = conn.execute(
                sa.select(versions.version).where(
                    versions.subject == subject, versions.schema_id == schema_id
                )
            ).first()
            if known is None:
                latest = conn.execute(
                    sa.select(sa.func.coalesce(sa.func.max(versions.version), 0)).where(
                        versions.subject == subject
                    )
                ).scalar_one()
                conn.execute(
                    sa.insert(_subject_versions).values(
                        subject=subject,
                        version=int(latest) + 1,
                        schema_id=schema_id,
                        created_at_ms=_now_ms(),
                    )
                )
            return schema_id

    def schema_by_id(self, schema_id: int) -> AvroSchema:
        """Raises ``CatalogError`` for an id the catalog never assigned."""
        with self._engine.connect() as conn:
            row = conn.execute(
                sa.select(_schema_texts.c.schema).where(_schema_texts.c.id == schema_id)
            ).first()
        if row is None:
            msg = f"schema id {schema_id} is not registered in the catalog"
            raise CatalogError(msg)
        return AvroSchema.from_dict(json.loads(row[0]))

    def schema_versions(self, subject: str | None = None) -> list[SchemaVersion]:
        """Registered (subject, version) pairs with their ids and texts, by subject and version."""
        v, t = _subject_versions.c, _schema_texts.c
        query = (
            sa.select(v.subject, v.version, v.schema_id, t.schema)
            .join_from(_subject_versions, _schema_texts, v.schema_id == t.id)
            .order_by(v.subject, v.version)
        )
        if subject is not None:
            query = query.where(v.subject == subject)
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
        return [SchemaVersion(r.schema_id, r.subject, r.version, r.schema) for r in rows]

    def delete_subject(self, subject: str) -> list[int]:
        """Forget a subject's versions (the schema texts and ids stay); returns the versions."""
        with self._tx() as conn:
            versions = [
                int(r[0])
                for r in conn.execute(
                    sa.select(_subject_versions.c.version).where(
                        _subject_versions.c.subject == subject
                    )
                )
            ]
            conn.execute(sa.delete(_subject_versions).where(_subject_versions.c.subject == subject))
            conn.execute(audit_row("delete_subject", subject))
        return versions

    # --- definitions ---------------------------------------------------------------------

    def _state(self) -> Any:
        with self._engine.connect() as conn:
            return conn.execute(
                sa.select(
                    sa.func.count(),
                    sa.func.max(_objects.c.updated_at_ms),
                    # Only entries that change definitions: refused requests are audited too,
                    # and must not make every API process reload its definitions.
                    sa.select(sa.func.count())
                    .select_from(_audit)
                    .where(_audit.c.action.in_(DEFINITION_ACTIONS))
                    .scalar_subquery(),
                )
            ).one()

    def definitions(self, *, include_retired: bool = False, max_age_s: float = 0.0) -> Definitions:
        """All current objects, every active feature-set version included.

        ``max_age_s`` lets a hot path (online serving) reuse definitions checked less than
        that long ago instead of asking the database on every call.

        Raises:
            CatalogError: nothing was applied yet.
        """
        if (
            max_age_s > 0
            and not include_retired
            and self._cached is not None
            and time.monotonic() - self._checked_at < max_age_s
        ):
            return self._cached[1]
        state = self._state()
        self._checked_at = time.monotonic()
        if not include_retired and self._cached is not None and self._cached[0] == tuple(state):
            return self._cached[1]
        query = sa.select(_objects).order_by(_objects.c.kind, _objects.c.name, _objects.c.version)
        if not include_retired:
            query = query.where(_objects.c.status == ACTIVE)
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
        if not rows:
            msg = "the catalog is empty; run `headwater apply PATH` first"
            raise CatalogError(msg)
        data: dict[str, list[Any]] = {
            k: [] for k in ("entities", "sources", "feature_sets", "feature_services")
        }
        for row in rows:
            body = json.loads(row.body)
            section = {
                "entity": "entities",
                "source": "sources",
                "feature_set": "feature_sets",
            }.get(row.kind, "feature_services")
            data[section].append(body)
        defs = definitions_from_dict(data)
        if not include_retired:
            self._cached = (tuple(state), defs)
        return defs

    def feature_set_versions(self, name: str) -> list[tuple[FeatureSet, str]]:
        """Every version of a feature set with its status, oldest first."""
        with self._engine.connect() as conn:
            rows = conn.execute(
                sa.select(_objects)
                .where(_objects.c.kind == "feature_set", _objects.c.name == name)
                .order_by(_objects.c.version)
            ).all()
        return [
            (
                definitions_from_dict({"feature_sets": [json.loads(r.body)]}).feature_sets[0],
                r.status,
            )
            for r in rows
        ]

    def save(
        self, defs: Definitions, feature_sets: Sequence[FeatureSet], detail: dict[str, Any]
    ) -> None:
        """Upsert entities, sources and services of ``defs`` and the given feature-set versions,
        in one transaction, with an audit entry."""
        now = _now_ms()
        with self._tx() as conn:
            rows: list[tuple[str, str, dict[str, Any]]] = [
                *(("entity", e.name, entity_to_dict(e)) for e in defs.entities),
                *(("source", x.name, source_to_dict(x)) for x in defs.sources),
                *(
                    ("feature_service", x.name, feature_service_to_dict(x))
                    for x in defs.feature_services
                ),
            ]
            for kind, name, body in rows:
                self._upsert(conn, kind, name, 1, body, now)
            for fs in feature_sets:
                self._upsert(conn, "feature_set", fs.name, fs.version, feature_set_to_dict(fs), now)
            conn.execute(audit_row("apply", "*", detail))

    def _upsert(
        self,
        conn: sa.Connection,
        kind: str,
        name: str,
        version: int,
        body: dict[str, Any],
        now: int,
    ) -> None:
        text = json.dumps(body, sort_keys=True)
        key = (
            (_objects.c.kind == kind) & (_objects.c.name == name) & (_objects.c.version == version)
        )
        existing = conn.execute(sa.select(_objects.c.body).where(key)).first()
        if existing is None:
            conn.execute(
                sa.insert(_objects).values(
                    kind=kind,
                    name=name,
                    version=version,
                    status=ACTIVE,
                    body=text,
                    created_at_ms=now,
                    updated_at_ms=now,
                )
            )
        elif existing[0] != text:
            conn.execute(
                sa.update(_objects).where(key).values(body=text, updated_at_ms=now, status=ACTIVE)
            )

    def retire(self, name: str, version: int) -> FeatureSet:
        """Mark one feature-set version retired: no longer served or computed.

        Raises:
            CatalogError: no such version, or it is the only active one.
        """
        versions = self.feature_set_versions(name)
        match = [fs for fs, status in versions if fs.version == version]
        if not match:
            known = [f"v{fs.version} ({status})" for fs, status in versions]
            msg = f"feature set {name!r} has no version {version}; it has {known or 'no versions'}"
            raise CatalogError(msg)
        active = [fs for fs, status in versions if status == ACTIVE]
        if active == match:
            msg = f"{name}@v{version} is the only active version of {name!r}; apply a new version before retiring it"
            raise CatalogError(msg)
        now = _now_ms()
        with self._tx() as conn:
            conn.execute(
                sa.update(_objects)
                .where(
                    _objects.c.kind == "feature_set",
                    _objects.c.name == name,
                    _objects.c.version == version,
                )
                .values(status=RETIRED, updated_at_ms=now)
            )
            conn.execute(audit_row("retire", f"{name}@v{version}"))
        return match[0]

    def topic_epoch(self, topic: str) -> tuple[str, int, dict[int, int]] | None:
        """The last epoch reset of a topic: ``(topic id, generation, start)``, where ``start``
        maps partitions to the offset of the last event treated as applied."""
        with self._engine.connect() as conn:
            row = conn.execute(
                sa.select(
                    _topic_epochs.c.topic_id, _topic_epochs.c.generation, _topic_epochs.c.start
                ).where(_topic_epochs.c.topic == topic)
            ).first()
        if row is None:
            return None
        return str(row[0]), int(row[1]), {int(p): int(o) for p, o in json.loads(row[2]).items()}

    def reset_topic_epoch(self, topic: str, topic_id: str, start: dict[int, int]) -> int:
        """Start a new epoch of a topic at ``start``; returns its generation."""
        previous = self.topic_epoch(topic)
        generation = previous[1] + 1 if previous is not None and previous[0] == topic_id else 1
        with self._tx() as conn:
            conn.execute(sa.delete(_topic_epochs).where(_topic_epochs.c.topic == topic))
            conn.execute(
                sa.insert(_topic_epochs).values(
                    topic=topic,
                    topic_id=topic_id,
                    generation=generation,
                    start=json.dumps({str(p): o for p, o in sorted(start.items())}),
                    created_at_ms=_now_ms(),
                )
            )
            detail = {"topic_id": topic_id, "generation": generation, "start": start}
            conn.execute(audit_row("reset_topic_epoch", topic, detail))
        return generation

    def audit(self, query: AuditQuery | None = None) -> list[AuditEntry]:
        """Audit entries, oldest first (``query`` narrows them; by default all)."""
        return read_audit(self._engine, query or AuditQuery())

    def record(
        self, action: str, target: str, detail: Mapping[str, Any] | None = None, outcome: str = "ok"
    ) -> None:
        """Add one audit entry by the current actor (``acting_as``)."""
        with self._tx() as conn:
            conn.execute(audit_row(action, target, detail, outcome))

    def key_store(self, server_secret: bytes) -> KeyStore:
        """The API keys in this catalog, hashed with ``server_secret`` (``load_server_secret``)."""
        return KeyStore(self._engine, server_secret)

    # --- training sets -------------------------------------------------------------------

    def save_training_set(self, record: TrainingSetRecord) -> None:
        """Record a training set under its name, with an audit entry.

        Raises:
            CatalogError: the name is taken (names are permanent, so a rebuild is unambiguous).
        """
        with self._tx() as conn:
            taken = conn.execute(
                sa.select(_training_sets.c.name).where(_training_sets.c.name == record.name)
            ).first()
            if taken is not None:
                msg = f"a training set named {record.name!r} exists; choose another name (names are never reused)"
                raise CatalogError(msg)
            body = json.dumps(record.to_dict(), sort_keys=True)
            conn.execute(
                sa.insert(_training_sets).values(
                    name=record.name, body=body, created_at_ms=record.created_at_ms
                )
            )
            conn.execute(audit_row("training_set", record.name, json.loads(body)))

    def has_training_set(self, name: str) -> bool:
        with self._engine.connect() as conn:
            row = conn.execute(
                sa.select(_training_sets.c.name).where(_training_sets.c.name == name)
            ).first()
        return row is not None

    def training_set(self, name: str) -> TrainingSetRecord:
        """Raises ``CatalogError`` naming the unknown training set."""
        with self._engine.connect() as conn:
            row = conn.execute(
                sa.select(_training_sets.c.body).where(_training_sets.c.name == name)
            ).first()
        if row is None:
            known = [t.name for t in self.training_sets()]
            msg = f"no training set named {name!r}; saved ones: {known or 'none'}"
            raise CatalogError(msg)
        return TrainingSetRecord.from_dict(json.loads(row[0]))

    def training_sets(self) -> list[TrainingSetRecord]:
        with self._engine.connect() as conn:
            rows = conn.execute(
                sa.select(_training_sets.c.body).order_by(_training_sets.c.created_at_ms)
            ).all()
        return [TrainingSetRecord.from_dict(json.loads(r[0])) for r in rows]
