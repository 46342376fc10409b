"""Definitions to and from plain dicts, the form the catalog stores them in."""

from __future__ import annotations

from typing import Any

from schemas.avro import AvroSchema
from schemas.definitions import (
    Definitions,
    Entity,
    Feature,
    FeatureService,
    FeatureSet,
    Source,
)

__all__ = ["definitions_from_dict", "definitions_to_dict"]


def definitions_to_dict(defs: Definitions) -> dict[str, Any]:
    return {
        "entities": [
            {"name": e.name, "keys": list(e.keys), "description": e.description} for e in defs.entities
        ],
        "sources": [
            {
                "name": s.name,
                "topic": s.topic,
                "timestamp": s.timestamp,
                "description": s.description,
                "schema": dict(s.schema.definition),
            }
            for s in defs.sources
        ],
        "feature_sets": [
            {
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
                "features": [
                    {"name": f.name, "function": f.function, "field": f.field, "window_ms": f.window_ms}
                    for f in fs.features
                ],
            }
            for fs in defs.feature_sets
        ],
        "feature_services": [
            {"name": s.name, "features": list(s.features), "description": s.description}
            for s in defs.feature_services
        ],
    }


def definitions_from_dict(data: dict[str, Any]) -> Definitions:
    return Definitions(
        entities=tuple(
            Entity(name=e["name"], keys=tuple(e["keys"]), description=e["description"])
            for e in data["entities"]
        ),
        sources=tuple(
            Source(
                name=s["name"],
                topic=s["topic"],
                timestamp=s["timestamp"],
                description=s["description"],
                schema=AvroSchema.from_dict(s["schema"]),
            )
            for s in data["sources"]
        ),
        feature_sets=tuple(
            FeatureSet(
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
                features=tuple(Feature(**f) for f in fs["features"]),
            )
            for fs in data["feature_sets"]
        ),
        feature_services=tuple(
            FeatureService(name=s["name"], features=tuple(s["features"]), description=s["description"])
            for s in data["feature_services"]
        ),
    )
