"""Definitions to and from plain dicts, the form the catalog stores them in."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from headwater.schemas.avro import AvroSchema
from headwater.schemas.definitions import (
    Definitions,
    Entity,
    Feature,
    FeatureService,
    FeatureSet,
    Source,
)
from headwater.schemas.feature_parameters import PARAMETER_NAMES
from headwater.schemas.monitoring import Monitoring, monitoring_from_dict, monitoring_to_dict

__all__ = [
    "definitions_from_dict",
    "definitions_to_dict",
    "entity_to_dict",
    "feature_parameters",
    "feature_service_to_dict",
    "feature_set_to_dict",
    "source_to_dict",
]


def entity_to_dict(e: Entity) -> dict[str, Any]:
    return {"name": e.name, "keys": list(e.keys), "description": e.description}


def source_to_dict(s: Source) -> dict[str, Any]:
    return {
        "name": s.name,
        "topic": s.topic,
        "dlq_topic": s.dlq_topic,
        "timestamp": s.timestamp,
        "description": s.description,
        "schema": dict(s.schema.definition),
    }


def feature_parameters(f: Feature) -> dict[str, Any]:
    """The function parameters a feature sets (unset ones are left out, so a catalog written
    before they existed reads back equal)."""
    out: dict[str, Any] = {}
    for name in PARAMETER_NAMES:
        value = getattr(f, name)
        if value not in (None, ()):
            out[name] = list(value) if isinstance(value, tuple) else value
    return out


def feature_set_to_dict(fs: FeatureSet) -> dict[str, Any]:
    return {
        "name": fs.name,
        "version": fs.version,
        "entity": fs.entity,
        "source": fs.source,
        "resolution_ms": fs.resolution_ms,
        "ttl_ms": fs.ttl_ms,
        "description": fs.description,
        "owner": fs.owner,
        "tags": list(fs.tags),
        "labels": dict(fs.labels),
        "filter": fs.filter,
        "transforms": dict(fs.transforms),
        "relations": dict(fs.relations),
        "features": [
            {"name": f.name, "function": f.function, "field": f.field, "window_ms": f.window_ms}
            | feature_parameters(f)
            | ({"tags": list(f.tags)} if f.tags else {})
            | ({"monitoring": monitoring_to_dict(f.monitoring)} if f.monitoring else {})
            for f in fs.features
        ],
        "monitoring": monitoring_to_dict(fs.monitoring),
    } | (
        {
            "request_schema": dict(fs.request_schema),
            "request_features": dict(fs.request_features),
        }
        if fs.request_schema or fs.request_features
        else {}
    )


def feature_service_to_dict(s: FeatureService) -> dict[str, Any]:
    return {"name": s.name, "features": list(s.features), "description": s.description}


def definitions_to_dict(defs: Definitions) -> dict[str, Any]:
    return {
        "entities": [entity_to_dict(e) for e in defs.entities],
        "sources": [source_to_dict(s) for s in defs.sources],
        "feature_sets": [feature_set_to_dict(fs) for fs in defs.feature_sets],
        "feature_services": [feature_service_to_dict(s) for s in defs.feature_services],
    }


def _feature(f: Mapping[str, Any]) -> Feature:
    monitoring = monitoring_from_dict(f.get("monitoring"), feature=True)
    return Feature(**{k: v for k, v in f.items() if k != "monitoring"}, monitoring=monitoring)


def _feature_set(fs: Mapping[str, Any]) -> FeatureSet:
    return FeatureSet(
        name=fs["name"],
        version=fs["version"],
        entity=fs["entity"],
        source=fs["source"],
        resolution_ms=fs["resolution_ms"],
        ttl_ms=fs["ttl_ms"],
        description=fs["description"],
        owner=fs["owner"],
        tags=tuple(fs["tags"]),
        labels=fs["labels"],
        filter=fs.get("filter"),
        transforms=fs.get("transforms", {}),
        relations=fs.get("relations", {}),
        features=tuple(_feature(f) for f in fs["features"]),
        monitoring=monitoring_from_dict(fs.get("monitoring")) or Monitoring(),
        request_schema=fs.get("request_schema", {}),
        request_features=fs.get("request_features", {}),
    )


def definitions_from_dict(data: Mapping[str, Any]) -> Definitions:
    return Definitions(
        entities=tuple(
            Entity(name=e["name"], keys=tuple(e["keys"]), description=e["description"])
            for e in data.get("entities", [])
        ),
        sources=tuple(
            Source(
                name=s["name"],
                topic=s["topic"],
                # Catalogs written before dead-letter topics were recorded used dlq.<name>.
                dlq_topic=s.get("dlq_topic", ""),
                timestamp=s["timestamp"],
                description=s["description"],
                schema=AvroSchema.from_dict(s["schema"]),
            )
            for s in data.get("sources", [])
        ),
        feature_sets=tuple(_feature_set(fs) for fs in data.get("feature_sets", [])),
        feature_services=tuple(
            FeatureService(
                name=s["name"], features=tuple(s["features"]), description=s["description"]
            )
            for s in data.get("feature_services", [])
        ),
    )
