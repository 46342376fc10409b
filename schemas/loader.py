"""Load definitions from YAML files (DESIGN §5), reporting every problem of a file at once.

Each problem names the file, the path inside it (``feature_sets[0].features[2].window``),
what was found and how to fix it. References between definitions may cross files; they are
checked once every file is read, and a reference to a definition that itself failed to load
is not reported again.
"""

from __future__ import annotations

import json
import runpy
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import yaml

from headwater.schemas.aggregations import NUMERIC_TYPES
from headwater.schemas.avro import AvroSchema
from headwater.schemas.definitions import (
    Definitions,
    Entity,
    Feature,
    FeatureRef,
    FeatureService,
    FeatureSet,
    Source,
)
from headwater.schemas.durations import parse_duration
from headwater.schemas.errors import DefinitionError
from headwater.schemas.expressions import ExpressionError, compile_expression

__all__ = ["load_definitions"]

T = TypeVar("T")

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
    "feature_set": {
        "name",
        "entity",
        "source",
        "resolution",
        "ttl",
        "description",
        "owner",
        "tags",
        "labels",
        "features",
        "aggregations",
        "filter",
        "transforms",
        "relations",
    },
    "feature": {"name", "function", "field", "window", "n"},
    "aggregation": {"field", "functions", "windows"},
    "feature_service": {"name", "features", "description"},
}
_NUMERIC_ONLY = {"sum", "mean", "stddev"}
_UNORDERED = {"boolean", "bytes", "record", "union", "map", "array"}
# What a feature may do with a field of these forms: arrays and records are JSON values that
# last/first/last_n keep as they are, but not hashable for count_distinct; a map reads back
# from Arrow as key/value pairs, so only its count is the same online and offline.
_ONLY: dict[str, tuple[str, ...]] = {
    "map": ("count",),
    "array": ("count", "last", "first", "last_n"),
    "record": ("count", "last", "first", "last_n"),
    "union": ("count",),
}
_EVENT_TIME_TYPES = ("long", "timestamp", "string", "int")


@dataclass
class _Collector:
    file: Path
    problems: list[str] = field(default_factory=list)

    def add(self, where: str, message: str) -> None:
        self.problems.append(f"{self.file}: {where}: {message}")

    def attempt(self, where: str, build: Callable[..., T | None], *args: Any) -> T | None:
        try:
            return build(*args)
        except (ValueError, KeyError, TypeError) as exc:
            self.add(where, str(exc.args[0]) if exc.args else repr(exc))
            return None


@dataclass
class _Placed(Generic[T]):
    """A definition and where it was written; ``features`` maps feature names to their paths."""

    item: T
    file: Path
    where: str
    features: dict[str, str] = field(default_factory=dict)
    broken_features: set[str] = field(default_factory=set)

    def at(self, suffix: str = "") -> str:
        return f"{self.file}: {self.where}{suffix}"


@dataclass
class _Loaded:
    entities: list[_Placed[Entity]] = field(default_factory=list)
    sources: list[_Placed[Source]] = field(default_factory=list)
    sets: list[_Placed[FeatureSet]] = field(default_factory=list)
    services: list[_Placed[FeatureService]] = field(default_factory=list)
    # Names that were written but failed to load: references to them are not reported again.
    broken: set[tuple[str, str]] = field(default_factory=set)


def _files(path: Path) -> Iterator[Path]:
    if path.is_dir():
        yield from sorted(
            p for p in path.rglob("*") if p.suffix in (".yaml", ".yml", ".py") and p.is_file()
        )
    elif path.exists():
        yield path
    else:
        msg = (
            f"{path}: no such file or directory; give a YAML or Python file or a directory of them"
        )
        raise DefinitionError(msg)


def _load_python(file: Path, c: _Collector, loaded: _Loaded) -> None:
    """Collect the definition objects a Python module builds at its top level.

    Objects bound to several names count once; ``Definitions`` objects contribute all they
    hold. Names starting with ``_`` are private and skipped.
    """
    try:
        namespace = runpy.run_path(str(file), run_name=f"headwater_definitions_{file.stem}")
    except Exception as exc:  # noqa: BLE001 - the user's module: any failure is a definition problem
        c.add("<module>", f"running the module failed: {type(exc).__name__}: {exc}")
        return
    seen: set[int] = set()

    def place(item: Any, where: str) -> None:
        if id(item) in seen:
            return
        seen.add(id(item))
        placed: _Placed[Any] = _Placed(item, file, where)
        if isinstance(item, Entity):
            loaded.entities.append(placed)
        elif isinstance(item, Source):
            loaded.sources.append(placed)
        elif isinstance(item, FeatureSet):
            placed.features = {f.name: f".features[{i}]" for i, f in enumerate(item.features)}
            loaded.sets.append(placed)
        elif isinstance(item, FeatureService):
            loaded.services.append(placed)

    for name, value in namespace.items():
        if name.startswith("_"):
            continue
        if isinstance(value, Definitions):
            for section in ("entities", "sources", "feature_sets", "feature_services"):
                for i, item in enumerate(getattr(value, section)):
                    place(item, f"{name}.{section}[{i}]")
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                place(item, f"{name}[{i}]")
        else:
            place(value, name)


def load_definitions(path: Path) -> Definitions:
    """Load and cross-check every definition file under ``path``.

    Raises:
        DefinitionError: listing every problem found, one per line.
    """
    loaded = _Loaded()
    problems: list[str] = []
    for file in _files(path):
        c = _Collector(file)
        if file.suffix == ".py":
            _load_python(file, c, loaded)
            problems += c.problems
            continue
        try:
            doc = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            problems.append(f"{file}: not valid YAML: {exc}")
            continue
        if not isinstance(doc, dict):
            problems.append(
                f"{file}: expected a mapping with entities/sources/feature_sets/feature_services, "
                f"got {type(doc).__name__}"
            )
            continue
        for key in sorted(set(doc) - set(_SECTIONS), key=str):
            c.add(
                str(key),
                "unknown section; expected entities, sources, feature_sets or feature_services",
            )
        builders: tuple[tuple[str, Callable[..., Any], list[_Placed[Any]]], ...] = (
            ("entities", _entity, loaded.entities),
            ("sources", _source, loaded.sources),
            ("feature_sets", _feature_set, loaded.sets),
            ("feature_services", _service, loaded.services),
        )
        for section, build, target in builders:
            for i, item in _items(c, doc, section):
                where = f"{section}[{i}]"
                placed: _Placed[Any] = _Placed(None, file, where)
                built = c.attempt(where, build, c, where, item, placed)
                if built is None:
                    loaded.broken.add((_KIND[section], str(item.get("name", ""))))
                else:
                    placed.item = built
                    target.append(placed)
        problems += c.problems
    problems += _cross_check(loaded)
    if problems:
        msg = f"{len(problems)} problem(s) in the definitions:\n  " + "\n  ".join(problems)
        raise DefinitionError(msg)
    return Definitions(
        entities=tuple(p.item for p in loaded.entities),
        sources=tuple(p.item for p in loaded.sources),
        feature_sets=tuple(p.item for p in loaded.sets),
        feature_services=tuple(p.item for p in loaded.services),
    )


def _items(
    c: _Collector, doc: Mapping[str, Any], section: str
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
        for key in sorted(set(item) - _KEYS[kind], key=str):
            c.add(f"{section}[{i}].{key}", f"unknown key; expected one of {sorted(_KEYS[kind])}")
        yield i, item


def _strings(c: _Collector, where: str, value: Any, example: str) -> list[str] | None:
    """A list of strings (a single string counts as a list of one), or ``None`` after a problem."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        c.add(where, f"expected a list of names like {example}, got {value!r}")
        return None
    return value


def _entity(
    c: _Collector, where: str, item: Mapping[str, Any], placed: _Placed[Any]
) -> Entity | None:
    keys = _strings(c, f"{where}.keys", item.get("keys"), "[user_id]")
    if keys is None:
        return None
    return Entity(
        name=str(item.get("name", "")),
        keys=tuple(keys),
        description=str(item.get("description", "")),
    )


def _source(
    c: _Collector, where: str, item: Mapping[str, Any], placed: _Placed[Any]
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
            f"{found}; name the event-time field, one of {sorted(schema.field_types)}",
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
    c: _Collector, where: str, item: Mapping[str, Any], placed: _Placed[Any]
) -> FeatureService | None:
    refs = _strings(c, f"{where}.features", item.get("features"), "[user_spend:spend_1h]")
    if refs is None:
        return None
    return FeatureService(
        name=str(item.get("name", "")),
        features=tuple(refs),
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


def _window(
    c: _Collector, where: str, value: Any, resolution: int | None, resolution_text: Any
) -> tuple[bool, int | None]:
    """``(ok, window_ms)`` for a window written as ``value``; a problem is added when not ok."""
    if value is None:
        return True, None
    window = _duration(c, where, value)
    if window is None:
        return False, None
    if resolution is not None and window % resolution:
        c.add(
            where,
            f"{value} is not a multiple of the resolution {resolution_text}; "
            "use a multiple of it or a finer resolution",
        )
        return False, None
    return True, window


def _feature_set(
    c: _Collector, where: str, item: Mapping[str, Any], placed: _Placed[Any]
) -> FeatureSet | None:
    resolution_text = item.get("resolution", "1m")
    resolution = _duration(c, f"{where}.resolution", resolution_text)
    ttl = _duration(c, f"{where}.ttl", item.get("ttl"))
    features: list[Feature] = []

    def add(fwhere: str, name_where: str, feature_name: str, **spec: Any) -> None:
        if feature_name in placed.features:
            first = where + placed.features[feature_name]
            c.add(name_where, f"feature {feature_name!r} is already defined at {first}; rename one")
            return
        feature = c.attempt(fwhere, lambda: Feature(name=feature_name, **spec))
        if feature is None:
            placed.broken_features.add(feature_name)
            return
        placed.features[feature.name] = fwhere[len(where) :]
        features.append(feature)

    for j, raw in enumerate(_section_list(c, f"{where}.features", item.get("features"))):
        fwhere = f"{where}.features[{j}]"
        if not isinstance(raw, dict):
            c.add(
                fwhere,
                f"expected a mapping like {{name: spend_1h, function: sum, field: amount, window: 1h}}, got {raw!r}",
            )
            continue
        for key in sorted(set(raw) - _KEYS["feature"], key=str):
            c.add(f"{fwhere}.{key}", f"unknown key; expected one of {sorted(_KEYS['feature'])}")
        name = str(raw.get("name", ""))
        good, window = _window(
            c, f"{fwhere}.window", raw.get("window"), resolution, resolution_text
        )
        if not good:
            placed.broken_features.add(name)
            continue
        add(
            fwhere,
            f"{fwhere}.name",
            name,
            function=str(raw.get("function", "")),
            field=raw.get("field"),
            window_ms=window,
            n=raw.get("n"),
        )
    for j, agg in enumerate(_section_list(c, f"{where}.aggregations", item.get("aggregations"))):
        awhere = f"{where}.aggregations[{j}]"
        if not isinstance(agg, dict):
            c.add(
                awhere,
                f"expected a mapping like {{field: amount, functions: [sum, mean], windows: [1h, 1d]}}, got {agg!r}",
            )
            continue
        for key in sorted(set(agg) - _KEYS["aggregation"], key=str):
            c.add(f"{awhere}.{key}", f"unknown key; expected one of {sorted(_KEYS['aggregation'])}")
        functions = _strings(c, f"{awhere}.functions", agg.get("functions"), "[sum, mean]") or []
        windows = agg.get("windows") or [None]
        if not isinstance(windows, list):
            windows = [windows]
        for k, w in enumerate(windows):
            suffix = str(w).strip() if w is not None else "lifetime"
            good, window = _window(c, f"{awhere}.windows[{k}]", w, resolution, resolution_text)
            for function in functions:
                name = f"{agg.get('field')}_{function}_{suffix}"
                if not good:
                    placed.broken_features.add(name)
                    continue
                add(
                    awhere,
                    awhere,
                    name,
                    function=function,
                    field=agg.get("field"),
                    window_ms=window,
                )
    tags = item.get("tags") or []
    if not isinstance(tags, list):
        c.add(f"{where}.tags", f"expected a list like [fraud, payments], got {tags!r}")
        tags = []
    labels = item.get("labels") or {}
    if not isinstance(labels, dict):
        c.add(f"{where}.labels", f"expected a mapping like {{tier: gold}}, got {labels!r}")
        labels = {}
    expression_filter = item.get("filter")
    if expression_filter is not None and not isinstance(expression_filter, str):
        c.add(
            f"{where}.filter",
            f"expected an expression string like \"status == 'approved'\", got {expression_filter!r}",
        )
        expression_filter = None
    transforms = item.get("transforms") or {}
    if not isinstance(transforms, dict) or not all(isinstance(v, str) for v in transforms.values()):
        c.add(
            f"{where}.transforms",
            f"expected a mapping of new field -> expression, like {{amount_usd: 'amount * fx_rate'}}, got {transforms!r}",
        )
        transforms = {}
    relations = item.get("relations") or {}
    if not isinstance(relations, dict):
        c.add(
            f"{where}.relations",
            f"expected a mapping of entity -> field, like {{merchant: merchant_id}}, got {relations!r}",
        )
        relations = {}
    if not features and placed.broken_features:
        return None  # every feature failed and was reported; "has no features" would be noise
    return FeatureSet(
        name=str(item.get("name", "")),
        entity=str(item.get("entity", "")),
        source=str(item.get("source", "")),
        features=tuple(features),
        # An invalid resolution is reported already; 1 s divides every window, so the
        # features are still checked against the schema without follow-on errors.
        resolution_ms=resolution or 1_000,
        ttl_ms=ttl,
        description=str(item.get("description", "")),
        owner=str(item.get("owner", "")),
        tags=tuple(str(t) for t in tags),
        labels={str(k): str(v) for k, v in labels.items()},
        filter=expression_filter,
        transforms={str(k): v for k, v in transforms.items()},
        relations={str(k): str(v) for k, v in relations.items()},
    )


def _section_list(c: _Collector, where: str, value: Any) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        c.add(where, f"expected a list, got {type(value).__name__}")
        return []
    return value


def _cross_check(loaded: _Loaded) -> list[str]:
    """References between definitions, and features against their source's schema."""
    problems: list[str] = []
    for kind, placed_items in (
        ("entity", loaded.entities),
        ("source", loaded.sources),
        ("feature set", loaded.sets),
        ("feature service", loaded.services),
    ):
        first: dict[str, _Placed[Any]] = {}
        for p in placed_items:
            name = p.item.name
            if name in first:
                problems.append(
                    f"{p.at('.name')}: {kind} {name!r} is already defined at {first[name].at()}; rename one"
                )
            else:
                first[name] = p
    entities = {p.item.name: p for p in reversed(loaded.entities)}
    sources = {p.item.name: p for p in reversed(loaded.sources)}
    sets = {p.item.name: p for p in reversed(loaded.sets)}
    for p in loaded.sets:
        fs = p.item
        entity, source = entities.get(fs.entity), sources.get(fs.source)
        if entity is None and ("entity", fs.entity) not in loaded.broken:
            problems.append(
                f"{p.at('.entity')}: unknown entity {fs.entity!r}; known: {sorted(entities)}; "
                "define it under entities or fix the name"
            )
        if source is None:
            if ("source", fs.source) not in loaded.broken:
                problems.append(
                    f"{p.at('.source')}: unknown source {fs.source!r}; known: {sorted(sources)}; "
                    "define it under sources or fix the name"
                )
            continue
        types = dict(source.item.schema.field_types)
        for name, text in fs.transforms.items():
            try:
                expression = compile_expression(text, types)
            except ExpressionError as exc:
                problems.append(f"{p.at(f'.transforms.{name}')}: {exc}")
                continue
            types[name] = expression.type
        if fs.filter is not None:
            try:
                condition = compile_expression(fs.filter, types)
            except ExpressionError as exc:
                problems.append(f"{p.at('.filter')}: {exc}")
            else:
                if condition.type != "boolean":
                    problems.append(
                        f"{p.at('.filter')}: the filter {fs.filter!r} is {condition.type}, not boolean; "
                        "write a condition such as \"status == 'approved'\""
                    )
        for entity_name, key_field in fs.relations.items():
            if entity_name not in entities and ("entity", entity_name) not in loaded.broken:
                problems.append(
                    f"{p.at(f'.relations.{entity_name}')}: unknown entity {entity_name!r}; known: {sorted(entities)}"
                )
            if key_field not in types:
                problems.append(
                    f"{p.at(f'.relations.{entity_name}')}: field {key_field!r} is not in source {fs.source!r} "
                    f"or the transforms; its fields are {sorted(types)}"
                )
        fields = sorted(types)
        for key in entity.item.keys if entity else ():
            if key not in types and entity is not None:
                problems.append(
                    f"{p.at('.entity')}: key {key!r} of entity {fs.entity!r} ({entity.at('.keys')}) is not a "
                    f"field of source {fs.source!r}; its fields are {fields}; add it to the schema or fix the key"
                )
        for f in fs.features:
            if f.field is None:
                continue
            fwhere = p.features[f.name]
            at = p.at(f"{fwhere}.field" if fwhere.startswith(".features[") else fwhere)
            if f.field not in types:
                problems.append(
                    f"{at}: feature {f.name!r}: field {f.field!r} is not in source {fs.source!r}; "
                    f"its fields are {fields}"
                )
            elif f.function in _NUMERIC_ONLY and types[f.field] not in NUMERIC_TYPES:
                problems.append(
                    f"{at}: feature {f.name!r}: {f.function} needs a numeric field "
                    f"({', '.join(sorted(NUMERIC_TYPES))}), but {f.field!r} is {types[f.field]}; "
                    "use a numeric field or a function such as count, last or first"
                )
            elif types[f.field] in _ONLY and f.function not in _ONLY[types[f.field]]:
                problems.append(
                    f"{at}: feature {f.name!r}: {f.function} cannot take the {types[f.field]} "
                    f"{f.field!r}; use {', '.join(_ONLY[types[f.field]])}, or a transform such as "
                    f"size({f.field})"
                    + (" or one of its fields (a.b)" if types[f.field] == "record" else "")
                )
            elif f.function in ("min", "max") and types[f.field] in _UNORDERED:
                problems.append(
                    f"{at}: feature {f.name!r}: {f.function} cannot order {types[f.field]} values "
                    f"of {f.field!r}; use a number, string or time field"
                )
    for p in loaded.services:
        for k, ref_text in enumerate(p.item.features):
            at = p.at(f".features[{k}]")
            try:
                ref = FeatureRef.parse(ref_text)
            except ValueError as exc:
                problems.append(f"{at}: {exc}")
                continue
            fs_placed = sets.get(ref.feature_set)
            if fs_placed is None:
                if ("feature_set", ref.feature_set) not in loaded.broken:
                    problems.append(
                        f"{at}: unknown feature {ref_text!r}: there is no feature set {ref.feature_set!r}; "
                        f"known: {sorted(sets)}"
                    )
            elif (
                ref.feature not in fs_placed.features
                and ref.feature not in fs_placed.broken_features
            ):
                problems.append(
                    f"{at}: unknown feature {ref_text!r}: feature set {ref.feature_set!r} has "
                    f"{[f.name for f in fs_placed.item.features]}"
                )
    return problems
