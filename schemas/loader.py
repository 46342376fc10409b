"""Load definitions from YAML files (DESIGN §5), reporting every problem of a file at once.

Each problem names the file, the path inside it (``feature_sets[0].features[2].window``),
what was found and how to fix it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from schemas.avro import AvroSchema
from schemas.definitions import (
    Definitions,
    Entity,
    Feature,
    FeatureRef,
    FeatureService,
    FeatureSet,
    Source,
)
from schemas.durations import parse_duration
from schemas.errors import DefinitionError

__all__ = ["load_definitions"]

T = TypeVar("T")

_KEYS: dict[str, set[str]] = {
    "entity": {"name", "keys", "description"},
    "source": {"name", "topic", "schema", "timestamp", "description"},
    "feature_set": {
        "name", "entity", "source", "resolution", "ttl", "description", "owner", "tags",
        "labels", "features", "aggregations",
    },
    "feature": {"name", "function", "field", "window"},
    "aggregation": {"field", "functions", "windows"},
    "feature_service": {"name", "features", "description"},
}
_NUMERIC_ONLY = {"sum", "mean"}
_ORDERED_ONLY = {"min", "max"}


@dataclass
class _Collector:
    file: Path
    problems: list[str] = field(default_factory=list)

    def add(self, where: str, message: str) -> None:
        self.problems.append(f"{self.file}: {where}: {message}")

    def attempt(self, where: str, build: Callable[[], T]) -> T | None:
        try:
            return build()
        except (ValueError, KeyError, TypeError) as exc:
            self.add(where, str(exc.args[0]) if exc.args else repr(exc))
            return None


def _files(path: Path) -> Iterator[Path]:
    if path.is_dir():
        yield from sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml"))
    elif path.exists():
        yield path
    else:
        msg = f"{path}: no such file or directory; give a YAML file or a directory of them"
        raise DefinitionError(msg)


def load_definitions(path: Path) -> Definitions:
    """Load and cross-check every definition file under ``path``.

    Raises:
        DefinitionError: listing every problem found, one per line.
    """
    entities: list[Entity] = []
    sources: list[Source] = []
    sets: list[FeatureSet] = []
    services: list[FeatureService] = []
    problems: list[str] = []
    for file in _files(path):
        c = _Collector(file)
        try:
            doc = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            problems.append(f"{file}: not valid YAML: {exc}")
            continue
        if not isinstance(doc, dict):
            problems.append(f"{file}: expected a mapping with entities/sources/feature_sets/feature_services")
            continue
        unknown = set(doc) - {"entities", "sources", "feature_sets", "feature_services"}
        for key in sorted(unknown):
            c.add(key, "unknown section; expected entities, sources, feature_sets or feature_services")
        for i, item in _items(c, doc, "entities"):
            entities += _some(c.attempt(f"entities[{i}]", lambda item=item: _entity(c, i, item)))
        for i, item in _items(c, doc, "sources"):
            sources += _some(c.attempt(f"sources[{i}]", lambda item=item, i=i: _source(c, file, i, item)))
        for i, item in _items(c, doc, "feature_sets"):
            sets += _some(c.attempt(f"feature_sets[{i}]", lambda item=item, i=i: _feature_set(c, i, item)))
        for i, item in _items(c, doc, "feature_services"):
            services += _some(c.attempt(
                f"feature_services[{i}]",
                lambda item=item, i=i: FeatureService(
                    name=item.get("name", ""),
                    features=tuple(_list(item.get("features"), f"feature_services[{i}].features")),
                    description=str(item.get("description", "")),
                ),
            ))
        problems += c.problems
    defs = Definitions(
        entities=tuple(entities),
        sources=tuple(sources),
        feature_sets=tuple(sets),
        feature_services=tuple(services),
    )
    problems += _cross_check(defs)
    if problems:
        msg = f"{len(problems)} problem(s) in the definitions:\n  " + "\n  ".join(problems)
        raise DefinitionError(msg)
    return defs


def _some(value: T | None) -> list[T]:
    return [] if value is None else [value]


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        msg = f"{where}: expected a list, got {type(value).__name__}"
        raise TypeError(msg)
    return value


def _items(c: _Collector, doc: Mapping[str, Any], section: str) -> Iterator[tuple[int, dict[str, Any]]]:
    items = doc.get(section) or []
    if not isinstance(items, list):
        c.add(section, f"expected a list, got {type(items).__name__}")
        return
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            c.add(f"{section}[{i}]", f"expected a mapping, got {type(item).__name__}")
            continue
        kind = {"entities": "entity"}.get(section, section[:-1])
        for key in sorted(set(item) - _KEYS[kind]):
            c.add(f"{section}[{i}].{key}", f"unknown key; expected one of {sorted(_KEYS[kind])}")
        yield i, item


def _entity(c: _Collector, i: int, item: Mapping[str, Any]) -> Entity:
    keys = item.get("keys")
    if isinstance(keys, str):
        keys = [keys]
    return Entity(
        name=item.get("name", ""),
        keys=tuple(_list(keys, f"entities[{i}].keys")),
        description=str(item.get("description", "")),
    )


def _source(c: _Collector, file: Path, i: int, item: Mapping[str, Any]) -> Source:
    schema_path = file.parent / str(item.get("schema", ""))
    if not item.get("schema") or not schema_path.is_file():
        msg = f"schema: file {schema_path} not found; give an .avsc path relative to {file.name}"
        raise ValueError(msg)
    try:
        schema = AvroSchema.from_file(schema_path)
    except ValueError as exc:
        msg = f"schema: {schema_path}: {exc}"
        raise ValueError(msg) from exc
    return Source(
        name=item.get("name", ""),
        schema=schema,
        timestamp=str(item.get("timestamp", "")),
        topic=str(item.get("topic", "")),
        description=str(item.get("description", "")),
    )


def _duration(c: _Collector, where: str, value: Any) -> int | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        c.add(where, str(exc))
        return None


def _feature_set(c: _Collector, i: int, item: Mapping[str, Any]) -> FeatureSet:
    where = f"feature_sets[{i}]"
    resolution = _duration(c, f"{where}.resolution", item.get("resolution", "1m")) or 60_000
    features: list[Feature] = []
    for j, raw in enumerate(item.get("features") or []):
        fwhere = f"{where}.features[{j}]"
        if not isinstance(raw, dict):
            c.add(fwhere, "expected a mapping like {name: spend_1h, function: sum, field: amount, window: 1h}")
            continue
        for key in sorted(set(raw) - _KEYS["feature"]):
            c.add(f"{fwhere}.{key}", f"unknown key; expected one of {sorted(_KEYS['feature'])}")
        window = _duration(c, f"{fwhere}.window", raw.get("window"))
        if window is not None and window % resolution:
            c.add(
                f"{fwhere}.window",
                f"{raw.get('window')} is not a multiple of the resolution "
                f"{item.get('resolution', '1m')}; use a multiple or a finer resolution",
            )
            continue
        features += _some(c.attempt(fwhere, lambda raw=raw, window=window: Feature(
            name=str(raw.get("name", "")),
            function=str(raw.get("function", "")),
            field=raw.get("field"),
            window_ms=window,
        )))
    for j, agg in enumerate(item.get("aggregations") or []):
        awhere = f"{where}.aggregations[{j}]"
        windows = agg.get("windows") or [None]
        for function in agg.get("functions") or []:
            for w in windows:
                window = _duration(c, f"{awhere}.windows", w)
                suffix = w if w is not None else "lifetime"
                features += _some(c.attempt(awhere, lambda function=function, window=window, suffix=suffix: Feature(
                    name=f"{agg.get('field')}_{function}_{suffix}",
                    function=str(function),
                    field=agg.get("field"),
                    window_ms=window,
                )))
    return FeatureSet(
        name=str(item.get("name", "")),
        entity=str(item.get("entity", "")),
        source=str(item.get("source", "")),
        features=tuple(features),
        resolution_ms=resolution,
        ttl_ms=_duration(c, f"{where}.ttl", item.get("ttl")),
        description=str(item.get("description", "")),
        owner=str(item.get("owner", "")),
        tags=tuple(str(t) for t in item.get("tags") or ()),
        labels={str(k): str(v) for k, v in (item.get("labels") or {}).items()},
    )


def _cross_check(defs: Definitions) -> list[str]:
    """References between definitions, and features against their source's schema."""
    problems: list[str] = []
    for kind, items in (
        ("entity", defs.entities),
        ("source", defs.sources),
        ("feature set", defs.feature_sets),
        ("feature service", defs.feature_services),
    ):
        names = [i.name for i in items]
        for name in sorted({n for n in names if names.count(n) > 1}):
            problems.append(f"{kind} {name!r} is defined more than once; rename one")
    entities = {e.name: e for e in defs.entities}
    sources = {s.name: s for s in defs.sources}
    sets = {fs.name: fs for fs in defs.feature_sets}
    for fs in defs.feature_sets:
        where = f"feature set {fs.name!r}"
        entity, source = entities.get(fs.entity), sources.get(fs.source)
        if entity is None:
            problems.append(f"{where}: unknown entity {fs.entity!r}; known: {sorted(entities)}")
        if source is None:
            problems.append(f"{where}: unknown source {fs.source!r}; known: {sorted(sources)}")
            continue
        types = source.schema.field_types
        for key in entity.keys if entity else ():
            if key not in types:
                problems.append(f"{where}: entity key {key!r} is not a field of source {source.name!r}")
        for f in fs.features:
            if f.field is None:
                continue
            if f.field not in types:
                problems.append(
                    f"{where}: feature {f.name!r}: field {f.field!r} is not in source "
                    f"{source.name!r}; its fields are {sorted(types)}"
                )
            elif f.function in _NUMERIC_ONLY and types[f.field] not in ("int", "long", "float", "double"):
                problems.append(
                    f"{where}: feature {f.name!r}: {f.function} needs a numeric field, "
                    f"but {f.field!r} is {types[f.field]}"
                )
            elif f.function in _ORDERED_ONLY and types[f.field] in ("boolean", "bytes", "record", "union", "map", "array"):
                problems.append(f"{where}: feature {f.name!r}: {f.function} cannot order {types[f.field]} values")
    for svc in defs.feature_services:
        for ref_text in svc.features:
            try:
                ref = FeatureRef.parse(ref_text)
            except ValueError as exc:
                problems.append(f"feature service {svc.name!r}: {exc}")
                continue
            fs = sets.get(ref.feature_set)
            if fs is None or ref.feature not in {f.name for f in fs.features}:
                problems.append(f"feature service {svc.name!r}: unknown feature {ref_text!r}")
    return problems
