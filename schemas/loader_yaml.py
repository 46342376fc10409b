"""Read one YAML definitions file: its sections, and each entity, source and feature service.

Every item is read on its own, so one file reports all of its problems at once; an item that
fails is remembered by name (``Loaded.broken``) so references to it are not reported again.
Feature sets, which have structure inside them, are read by ``loader_feature_sets``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from headwater.schemas.avro import AvroSchema
from headwater.schemas.definitions import Entity, FeatureService, Source
from headwater.schemas.loader_feature_sets import FEATURE_SET_KEYS, read_feature_set
from headwater.schemas.loader_problems import Collector, Loaded, Placed
from headwater.schemas.suggestions import did_you_mean

__all__ = ["load_yaml"]

_SECTIONS = ("entities", "sources", "feature_sets", "feature_services")
_KIND = {
    "entities": "entity",
    "sources": "source",
    "feature_sets": "feature_set",
    "feature_services": "feature_service",
}
_KEYS: dict[str, set[str]] = {
    "entity": {"name", "keys", "description"},
    "source": {"name", "topic", "dlq_topic", "schema", "timestamp", "description"},
    "feature_set": FEATURE_SET_KEYS,
    "feature_service": {"name", "features", "description"},
}
_EVENT_TIME_TYPES = ("long", "timestamp", "string", "int")


def load_yaml(file: Path, c: Collector, loaded: Loaded) -> None:
    """Read every definition of the YAML ``file`` into ``loaded``, its problems into ``c``."""
    try:
        doc = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        c.problems.append(f"{file}: not valid YAML: {exc}")
        return
    if not isinstance(doc, dict):
        c.problems.append(
            f"{file}: expected a mapping with entities/sources/feature_sets/feature_services, "
            f"got {type(doc).__name__}"
        )
        return
    for key in sorted(set(doc) - set(_SECTIONS), key=str):
        c.add(
            str(key),
            "unknown section; expected entities, sources, feature_sets or feature_services"
            + did_you_mean(key, _SECTIONS),
        )
    builders: tuple[tuple[str, Callable[..., Any], list[Placed[Any]]], ...] = (
        ("entities", _entity, loaded.entities),
        ("sources", _source, loaded.sources),
        ("feature_sets", read_feature_set, loaded.sets),
        ("feature_services", _service, loaded.services),
    )
    for section, build, target in builders:
        for i, item in _items(c, doc, section):
            where = f"{section}[{i}]"
            placed: Placed[Any] = Placed(None, file, where)
            built = c.attempt(where, build, c, where, item, placed)
            if built is None:
                loaded.broken.add((_KIND[section], str(item.get("name", ""))))
            else:
                placed.item = built
                target.append(placed)


def _items(
    c: Collector, doc: Mapping[str, Any], section: str
) -> Iterator[tuple[int, dict[str, Any]]]:
    items = doc.get(section) or []
    if not isinstance(items, list):
        c.add(section, f"expected a list, got {type(items).__name__}")
        return
    kind = _KIND[section]
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            c.add(
                f"{section}[{i}]",
                f"expected a mapping with keys {sorted(_KEYS[kind])}, got {type(item).__name__}",
            )
            continue
        c.unknown_keys(f"{section}[{i}]", item, _KEYS[kind])
        yield i, item


def _entity(
    c: Collector, where: str, item: Mapping[str, Any], placed: Placed[Any]
) -> Entity | None:
    keys = c.names(f"{where}.keys", item.get("keys"), "[user_id]")
    if keys is None:
        return None
    return Entity(
        name=str(item.get("name", "")),
        keys=tuple(keys),
        description=str(item.get("description", "")),
    )


def _source(
    c: Collector, where: str, item: Mapping[str, Any], placed: Placed[Any]
) -> Source | None:
    schema_path = c.file.parent / str(item.get("schema", ""))
    if not item.get("schema") or not schema_path.is_file():
        c.add(
            f"{where}.schema",
            f"schema file {str(item.get('schema', ''))!r} not found (looked for {schema_path}); "
            f"give an .avsc path relative to {c.file.name}",
        )
        return None
    try:
        schema = AvroSchema.from_file(schema_path)
    except json.JSONDecodeError as exc:
        c.add(
            f"{where}.schema",
            f"{schema_path} is not valid JSON ({exc}); give an Avro record schema",
        )
        return None
    except ValueError as exc:
        c.add(f"{where}.schema", f"{schema_path}: {exc}")
        return None
    timestamp = item.get("timestamp")
    if (
        isinstance(timestamp, str)
        and timestamp in schema.field_types
        and ("." in timestamp or schema.field_types[timestamp] not in _EVENT_TIME_TYPES)
    ):
        kind = schema.field_types[timestamp]
        where_found = "a field of a nested record" if "." in timestamp else f"a {kind} field"
        c.add(
            f"{where}.timestamp",
            f"{timestamp!r} is {where_found}; the event time must be a top-level long "
            "(epoch ms), timestamp-millis/-micros, local-timestamp-millis/-micros or ISO-8601 "
            "string field",
        )
        return None
    if timestamp not in schema.field_types:
        found = (
            "missing"
            if timestamp is None
            else f"{timestamp!r} is not a field of schema {schema.name!r}"
        )
        c.add(
            f"{where}.timestamp",
            f"{found}; name the event-time field, one of {sorted(schema.field_types)}"
            + ("" if timestamp is None else did_you_mean(timestamp, schema.field_types)),
        )
        return None
    return Source(
        name=str(item.get("name", "")),
        schema=schema,
        timestamp=str(timestamp),
        topic=str(item.get("topic", "") or ""),
        dlq_topic=str(item.get("dlq_topic", "") or ""),
        description=str(item.get("description", "")),
    )


def _service(
    c: Collector, where: str, item: Mapping[str, Any], placed: Placed[Any]
) -> FeatureService | None:
    refs = c.names(f"{where}.features", item.get("features"), "[user_spend:spend_1h]")
    if refs is None:
        return None
    return FeatureService(
        name=str(item.get("name", "")),
        features=tuple(refs),
        description=str(item.get("description", "")),
    )
