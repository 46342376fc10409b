"""Checks across definitions, once every file is read: names defined twice, references
between definitions (they may cross files), and each feature set against its source's schema
(key fields, filter and transforms, relations, what each feature's function can take).

A reference to a definition that itself failed to load (``Loaded.broken``) is not reported
again: its own problem says what to fix.
"""

from __future__ import annotations

from typing import Any

from headwater.schemas.aggregations import NUMERIC_TYPES
from headwater.schemas.definitions import Definitions, FeatureRef
from headwater.schemas.expressions import ExpressionError, compile_expression
from headwater.schemas.loader_problems import Loaded, Placed
from headwater.schemas.request_features import compile_request_feature
from headwater.schemas.suggestions import did_you_mean

__all__ = ["cross_check"]

_NUMERIC_ONLY = {
    "sum",
    "mean",
    "stddev",
    "sum_if",
    "variance",
    "skew",
    "kurtosis",
    "approx_percentile",
}
_UNORDERED = {"boolean", "bytes", "record", "union", "map", "array"}
# What a feature may do with a field of these forms: arrays and records are JSON values that
# last/first/last_n keep as they are, but not hashable for count_distinct; a map reads back
# from Arrow as key/value pairs, so only its count is the same online and offline.
_ONLY: dict[str, tuple[str, ...]] = {
    "map": ("count",),
    "array": ("count", "count_if", "last", "first", "last_n", "first_n"),
    "record": ("count", "count_if", "last", "first", "last_n", "first_n"),
    "union": ("count",),
}


def _condition_problem(text: str, types: dict[str, str], what: str, example: str) -> str | None:
    """Why ``text`` is not a boolean expression over ``types``, or ``None``."""
    try:
        condition = compile_expression(text, types)
    except ExpressionError as exc:
        return str(exc)
    if condition.type != "boolean":
        return (
            f"{what} {text!r} is {condition.type}, not boolean; "
            f'write a condition such as "{example}"'
        )
    return None


def cross_check(loaded: Loaded) -> list[str]:
    """References between definitions, and features against their source's schema."""
    problems: list[str] = []
    for kind, placed_items in (
        ("entity", loaded.entities),
        ("source", loaded.sources),
        ("feature set", loaded.sets),
        ("feature service", loaded.services),
    ):
        first: dict[str, Placed[Any]] = {}
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
                "define it under entities or fix the name" + did_you_mean(fs.entity, entities)
            )
        if source is None:
            if ("source", fs.source) not in loaded.broken:
                problems.append(
                    f"{p.at('.source')}: unknown source {fs.source!r}; known: {sorted(sources)}; "
                    "define it under sources or fix the name" + did_you_mean(fs.source, sources)
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
            problem = _condition_problem(fs.filter, types, "the filter", "status == 'approved'")
            if problem:
                problems.append(f"{p.at('.filter')}: {problem}")
        for entity_name, key_field in fs.relations.items():
            if entity_name not in entities and ("entity", entity_name) not in loaded.broken:
                problems.append(
                    f"{p.at(f'.relations.{entity_name}')}: unknown entity {entity_name!r}; known: {sorted(entities)}"
                    + did_you_mean(entity_name, entities)
                )
            if key_field not in types:
                problems.append(
                    f"{p.at(f'.relations.{entity_name}')}: field {key_field!r} is not in source {fs.source!r} "
                    f"or the transforms; its fields are {sorted(types)}"
                    + did_you_mean(key_field, types)
                )
        fields = sorted(types)
        for key in entity.item.keys if entity else ():
            if key not in types and entity is not None:
                problems.append(
                    f"{p.at('.entity')}: key {key!r} of entity {fs.entity!r} ({entity.at('.keys')}) is not a "
                    f"field of source {fs.source!r}; its fields are {fields}; add it to the schema or fix the key"
                    + did_you_mean(key, types)
                )
        for f in fs.features:
            fwhere = p.features[f.name]
            if f.where is not None:
                at = p.at(f"{fwhere}.where" if fwhere.startswith(".features[") else fwhere)
                problem = _condition_problem(f.where, types, "where", "status == 'declined'")
                if problem:
                    problems.append(f"{at}: feature {f.name!r}: {problem}")
            if f.field is None:
                continue
            at = p.at(f"{fwhere}.field" if fwhere.startswith(".features[") else fwhere)
            if f.field not in types:
                problems.append(
                    f"{at}: feature {f.name!r}: field {f.field!r} is not in source {fs.source!r}; "
                    f"its fields are {fields}" + did_you_mean(f.field, types)
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
    problems += _request_feature_problems(loaded, sources)
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
                        f"known: {sorted(sets)}" + did_you_mean(ref.feature_set, sets)
                    )
            elif (
                ref.feature not in fs_placed.features
                and ref.feature not in fs_placed.broken_features
                and ref.feature not in fs_placed.item.request_features
            ):
                known = [*fs_placed.features, *fs_placed.item.request_features]
                problems.append(
                    f"{at}: unknown feature {ref_text!r}: feature set {ref.feature_set!r} has "
                    f"{known}" + did_you_mean(ref.feature, known)
                )
    return problems


def _request_feature_problems(loaded: Loaded, sources: dict[str, Placed[Any]]) -> list[str]:
    """Each request feature type-checked against every loaded definition (it may read
    other feature sets), at ``feature_sets[i].request_features.<name>``."""
    if not any(p.item.request_features for p in loaded.sets):
        return []
    first_sets = {p.item.name: p.item for p in reversed(loaded.sets)}
    defs = Definitions(
        entities=tuple({p.item.name: p.item for p in reversed(loaded.entities)}.values()),
        sources=tuple(p.item for p in sources.values()),
        feature_sets=tuple(first_sets.values()),
    )
    problems = []
    for p in loaded.sets:
        if p.item.source not in sources:
            continue  # reported already
        for name in p.item.request_features:
            try:
                compile_request_feature(defs, p.item, name, loading=True)
            except (ExpressionError, KeyError) as exc:
                problems.append(f"{p.at(f'.request_features.{name}')}: {exc}")
    return problems
