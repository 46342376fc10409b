"""What the catalog shows people: listings, search, one feature set, lineage.

Plain data (dicts and lists) so the CLI and the HTTP API render the same answers.
"""

from __future__ import annotations

from typing import Any

from headwater.connectors.catalog import Catalog
from headwater.connectors.offline_delta import DeltaOfflineStore
from headwater.connectors.online_redis import entity_redis_key
from headwater.schemas.definitions import Definitions, FeatureRef, FeatureSet
from headwater.schemas.durations import format_duration
from headwater.schemas.serialize import feature_parameters
from headwater.serving.errors import NotFoundError

__all__ = ["feature_set_summary", "lineage", "search_features", "set_search_text"]


def _window(ms: int | None) -> str:
    return format_duration(ms) if ms else "lifetime"


def feature_set_summary(fs: FeatureSet, *, status: str = "active") -> dict[str, Any]:
    return {
        "name": fs.name,
        "version": fs.version,
        "status": status,
        "entity": fs.entity,
        "source": fs.source,
        "description": fs.description,
        "owner": fs.owner,
        "tags": list(fs.tags),
        "labels": dict(fs.labels),
        "resolution": format_duration(fs.resolution_ms),
        "ttl": format_duration(fs.ttl_ms) if fs.ttl_ms else None,
        "filter": fs.filter,
        "transforms": dict(fs.transforms),
        "relations": dict(fs.relations),
        "features": [
            {
                "name": f.name,
                "function": f.function,
                "field": f.field,
                "window": _window(f.window_ms),
                **{
                    k: v
                    for k, v in feature_parameters(f).items()
                    if k not in ("offset_ms", "resolution_ms")
                },
                **({"offset": format_duration(f.offset_ms)} if f.offset_ms else {}),
                # A feature's own tile length, when it is not the set's resolution.
                **(
                    {"tile": format_duration(fs.tile_ms(f))}
                    if f.window_ms and fs.tile_ms(f) != fs.resolution_ms
                    else {}
                ),
            }
            for f in fs.features
        ],
        "request_schema": dict(fs.request_schema),
        "request_features": dict(fs.request_features),
    }


def set_search_text(fs: FeatureSet) -> str:
    """What a search matches a feature set by (lower case): its name, description, owner,
    entity, source, tags and labels."""
    return " ".join(
        [
            fs.name,
            fs.description,
            fs.owner,
            fs.entity,
            fs.source,
            *fs.tags,
            *(f"{k}:{v}" for k, v in fs.labels.items()),
        ]
    ).lower()


def search_features(defs: Definitions, query: str) -> list[dict[str, Any]]:
    """Features whose name, description, tags, labels or owner (or their set's) match ``query``.

    Case-insensitive substring match on every word of the query (all words must match).
    """
    words = [w.lower() for w in query.split() if w]
    hits = []
    for fs in defs.feature_sets:
        set_text = set_search_text(fs)
        for f in fs.features:
            text = f"{set_text} {f.name} {f.function} {f.field or ''}".lower()
            if all(w in text for w in words):
                hits.append(
                    {
                        "reference": f"{fs.name}@v{fs.version}:{f.name}",
                        "feature_set": fs.name,
                        "version": fs.version,
                        "feature": f.name,
                        "function": f.function,
                        "field": f.field,
                        "window": _window(f.window_ms),
                        "description": fs.description,
                        "owner": fs.owner,
                        "tags": list(fs.tags),
                    }
                )
        for name, expression in fs.request_features.items():
            # Computed at lookup time: searchable by name and by what its expression reads.
            if all(w in f"{set_text} {name} request {expression}".lower() for w in words):
                hits.append(
                    {
                        "reference": f"{fs.name}@v{fs.version}:{name}",
                        "feature_set": fs.name,
                        "version": fs.version,
                        "feature": name,
                        "function": "request",
                        "field": None,
                        "window": "request time",
                        "expression": expression,
                        "description": fs.description,
                        "owner": fs.owner,
                        "tags": list(fs.tags),
                    }
                )
    return hits


def lineage(
    catalog: Catalog, offline: DeltaOfflineStore, name: str, *, key_prefix: str = "hw"
) -> dict[str, Any]:
    """Source topic and schema -> feature set versions -> online keyspace (under
    ``key_prefix``, ``redis.key_prefix``) and Delta table -> feature services -> training sets."""
    defs = catalog.definitions()
    versions = catalog.feature_set_versions(name)
    if not versions:
        msg = (
            f"unknown feature set {name!r}; known: {sorted({fs.name for fs in defs.feature_sets})}"
        )
        raise NotFoundError(msg)
    source = defs.source(versions[-1][0].source)
    subject = source.subject
    schema_versions = catalog.schema_versions(subject)
    services = []
    for svc in defs.feature_services:
        used = [r for r in svc.features if FeatureRef.parse(r).feature_set == name]
        if used:
            services.append({"name": svc.name, "features": used})
    return {
        "feature_set": name,
        "source": {
            "name": source.name,
            "topic": source.topic,
            "dead_letter_topic": source.dlq_topic,
            "schema_subject": subject,
            "schema_versions": [{"version": v.version, "id": v.id} for v in schema_versions],
        },
        "versions": [
            {
                "version": fs.version,
                "status": status,
                "entity": fs.entity,
                "online_keyspace": entity_redis_key(fs, ("*",), key_prefix),
                "offline_table": offline.table_uri(fs),
                "offline_table_version": offline.version(fs),
            }
            for fs, status in versions
        ],
        "feature_services": services,
        "training_sets": [
            {
                "name": t.name,
                "features": [f for f in t.features if FeatureRef.parse(f).feature_set == name],
                "table_versions": t.table_versions,
                "rows": t.rows,
            }
            for t in catalog.training_sets()
            if any(FeatureRef.parse(f).feature_set == name for f in t.features)
        ],
    }
