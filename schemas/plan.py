"""What ``headwater apply`` will do: create, update in place, new version, or nothing.

A change to a feature set is compatible (updated in place, same online keys and offline
table) when the state already kept answers the new definition: new features whose partial
states the version already keeps, and metadata (description, owner, tags, labels, TTL,
relations). Anything that changes which events count or how (entity, source, resolution,
filter, transforms, a feature's function, field or window, a removed feature, or a new
feature needing state the version does not keep; a request feature's expression changed or
removed, a request field retyped or removed) makes version n+1 with its own online keys
and offline table; the old version keeps serving until it is retired.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from headwater.schemas.definitions import Definitions, Feature, FeatureSet, Source
from headwater.schemas.durations import format_duration
from headwater.schemas.feature_parameters import PARAMETER_NAMES
from headwater.schemas.serialize import entity_to_dict, feature_service_to_dict, source_to_dict

__all__ = [
    "Action",
    "Plan",
    "PlanItem",
    "feature_set_changes",
    "make_plan",
    "source_change_allowed",
]

Action = Literal["create", "update", "new_version", "unchanged"]

_METADATA = ("description", "owner", "tags", "labels", "ttl_ms", "relations", "monitoring")
_BREAKING = ("entity", "source", "resolution_ms", "filter", "transforms")


@dataclass(frozen=True)
class PlanItem:
    kind: str
    name: str
    action: Action
    version: int | None = None
    changes: tuple[str, ...] = ()

    def describe(self) -> str:
        label = f"{self.name}@v{self.version}" if self.version is not None else self.name
        text = f"{self.action.replace('_', ' '):<12} {self.kind:<16} {label}"
        return text + (f"  ({'; '.join(self.changes)})" if self.changes else "")


@dataclass(frozen=True)
class Plan:
    items: tuple[PlanItem, ...]
    definitions: Definitions
    """The new definitions with feature-set versions assigned."""
    to_save: tuple[FeatureSet, ...]
    """Feature-set versions to write (created, updated or new)."""
    new_versions: tuple[FeatureSet, ...]
    """Feature-set versions that did not exist before (need topics, tables, bootstrap)."""

    @property
    def changed(self) -> bool:
        return any(item.action != "unchanged" for item in self.items)


def _describe(f: Feature) -> str:
    window = format_duration(f.window_ms) if f.window_ms else "lifetime"
    parameters = "".join(
        f", {name}={value!r}"
        for name in PARAMETER_NAMES[:-2]  # offset and tiles are said with the window
        if (value := getattr(f, name)) not in (None, ())
    )
    if f.offset_ms:
        window += f" offset {format_duration(f.offset_ms)}"
    if f.resolution_ms:
        window += f" in {format_duration(f.resolution_ms)} tiles"
    return f"{f.function}({f.field or ''}{parameters}) over {window}"


def _schema_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Field-level differences of two record schemas, for people to read."""
    before = {f["name"]: f for f in old.get("fields", [])}
    after = {f["name"]: f for f in new.get("fields", [])}
    changes = []
    added = [n for n in after if n not in before]
    removed = [n for n in before if n not in after]
    retyped = [n for n in after if n in before and after[n].get("type") != before[n].get("type")]
    if added:
        changes.append(f"schema: fields added {added}")
    if removed:
        changes.append(f"schema: fields removed {removed}")
    if retyped:
        changes.append(f"schema: types changed {retyped}")
    if not changes:
        changes.append("schema: documentation or defaults changed")
    return changes


def _fmt(value: Any) -> str:
    return repr(dict(value)) if isinstance(value, Mapping) else repr(value)


def _feature_set_changes(
    old: FeatureSet, new: FeatureSet, partial_keys: Callable[[FeatureSet], frozenset[str]]
) -> tuple[list[str], list[str]]:
    """(breaking changes, compatible changes) between two definitions of one set."""
    breaking, compatible = [], []
    for attribute in _BREAKING:
        a, b = getattr(old, attribute), getattr(new, attribute)
        if (dict(a) if isinstance(a, Mapping) else a) != (dict(b) if isinstance(b, Mapping) else b):
            breaking.append(f"{attribute}: {_fmt(a)} -> {_fmt(b)}")
    old_features = {f.name: f for f in old.features}
    new_features = {f.name: f for f in new.features}
    for name, f in old_features.items():
        if name not in new_features:
            breaking.append(f"feature {name!r} removed")
        elif replace(new_features[name], tags=(), monitoring=None) != replace(
            f, tags=(), monitoring=None
        ):
            breaking.append(f"feature {name!r}: {_describe(f)} -> {_describe(new_features[name])}")
        else:  # metadata: who may read it and when it is unhealthy, not its values
            if new_features[name].tags != f.tags:
                compatible.append(
                    f"feature {name!r} tags: {list(f.tags)} -> {list(new_features[name].tags)}"
                )
            if new_features[name].monitoring != f.monitoring:
                compatible.append(f"feature {name!r} monitoring")
    added = [n for n in new_features if n not in old_features]
    if added:
        if partial_keys(new) <= partial_keys(old):
            compatible.append(f"new feature(s) {added}")
        else:
            missing = sorted(partial_keys(new) - partial_keys(old))
            breaking.append(
                f"new feature(s) {added} need state v{old.version} does not keep: {missing}"
            )
    _request_changes(old, new, breaking, compatible)
    for attribute in _METADATA:
        a, b = getattr(old, attribute), getattr(new, attribute)
        if (dict(a) if isinstance(a, Mapping) else a) != (dict(b) if isinstance(b, Mapping) else b):
            compatible.append(f"{attribute}: {_fmt(a)} -> {_fmt(b)}")
    if (
        [f.name for f in old.features] != [f.name for f in new.features]
        and not added
        and not breaking
    ):
        compatible.append("feature order")
    return breaking, compatible


def _request_changes(
    old: FeatureSet, new: FeatureSet, breaking: list[str], compatible: list[str]
) -> None:
    """Request features follow the rules of stored ones: a new one (or a new request field)
    is compatible; a removed one, a changed expression or a retyped or removed request
    field changes what the set serves, so it makes a new version."""
    for kind, before, after in (
        ("request feature", old.request_features, new.request_features),
        ("request field", old.request_schema, new.request_schema),
    ):
        for name, value in before.items():
            if name not in after:
                breaking.append(f"{kind} {name!r} removed")
            elif after[name] != value:
                breaking.append(f"{kind} {name!r}: {value!r} -> {after[name]!r}")
        added = [name for name in after if name not in before]
        if added:
            compatible.append(f"new {kind}(s) {added}")


def feature_set_changes(
    old: FeatureSet, new: FeatureSet, partial_keys: Callable[[FeatureSet], frozenset[str]]
) -> tuple[list[str], list[str]]:
    """(breaking, compatible) changes from ``old`` to ``new``, in the words ``apply`` prints,
    so the console's diff of two stored versions reads like the plan that made them."""
    return _feature_set_changes(old, new, partial_keys)


def make_plan(
    new: Definitions,
    current: Definitions | None,
    *,
    all_versions: Mapping[str, int],
    partial_keys: Callable[[FeatureSet], frozenset[str]],
) -> Plan:
    """Compare freshly loaded definitions with the catalog's.

    Args:
        new: definitions as loaded from files (every feature set at version 1).
        current: the catalog's active definitions, or ``None`` for an empty catalog.
        all_versions: highest version ever used per feature-set name, retired ones included,
            so a version number is never reused.
        partial_keys: the partial states a feature-set version keeps (from its aggregator).
    """
    items: list[PlanItem] = []
    for kind, section, to_dict in (
        ("entity", "entities", entity_to_dict),
        ("source", "sources", source_to_dict),
        ("feature_service", "feature_services", feature_service_to_dict),
    ):
        old_items = {o.name: o for o in getattr(current, section, ())} if current else {}
        for obj in getattr(new, section):
            before = old_items.get(obj.name)
            if before is None:
                items.append(PlanItem(kind, obj.name, "create"))
            elif to_dict(before) != to_dict(obj):
                a, b = to_dict(before), to_dict(obj)
                changes = _dict_changes(
                    {k: v for k, v in a.items() if k != "schema"},
                    {k: v for k, v in b.items() if k != "schema"},
                )
                if a.get("schema") != b.get("schema"):
                    changes += _schema_changes(a["schema"], b["schema"])
                items.append(PlanItem(kind, obj.name, "update", changes=tuple(changes)))
            else:
                items.append(PlanItem(kind, obj.name, "unchanged"))
    sets: list[FeatureSet] = []
    to_save: list[FeatureSet] = []
    new_versions: list[FeatureSet] = []
    for fs in new.feature_sets:
        old_versions = [v for v in current.feature_sets if v.name == fs.name] if current else []
        latest = max(old_versions, key=lambda v: v.version) if old_versions else None
        if latest is None:
            created = replace(fs, version=all_versions.get(fs.name, 0) + 1)
            items.append(PlanItem("feature_set", fs.name, "create", created.version))
            sets.append(created)
            to_save.append(created)
            new_versions.append(created)
            continue
        candidate = replace(fs, version=latest.version)
        breaking, compatible = _feature_set_changes(latest, candidate, partial_keys)
        if breaking:
            bumped = replace(fs, version=max(all_versions.get(fs.name, 0), latest.version) + 1)
            items.append(
                PlanItem(
                    "feature_set",
                    fs.name,
                    "new_version",
                    bumped.version,
                    tuple(breaking + compatible),
                )
            )
            # The older active versions keep serving (and being computed) until retired.
            sets.extend(old_versions)
            sets.append(bumped)
            to_save.append(bumped)
            new_versions.append(bumped)
        elif compatible:
            items.append(
                PlanItem("feature_set", fs.name, "update", latest.version, tuple(compatible))
            )
            sets.extend(v for v in old_versions if v.version != latest.version)
            sets.append(candidate)
            to_save.append(candidate)
        else:
            items.append(PlanItem("feature_set", fs.name, "unchanged", latest.version))
            sets.extend(old_versions)
    if current is not None:
        # Sets that are no longer in the files stay as they are: removal is `retire`.
        named = {fs.name for fs in new.feature_sets}
        sets.extend(fs for fs in current.feature_sets if fs.name not in named)
    merged = Definitions(
        entities=_merged(new.entities, current.entities if current else ()),
        sources=_merged(new.sources, current.sources if current else ()),
        feature_sets=tuple(sets),
        feature_services=_merged(new.feature_services, current.feature_services if current else ()),
    )
    return Plan(tuple(items), merged, tuple(to_save), tuple(new_versions))


def _merged(new: tuple[Any, ...], old: tuple[Any, ...]) -> tuple[Any, ...]:
    names = {o.name for o in new}
    return tuple(new) + tuple(o for o in old if o.name not in names)


def _dict_changes(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    return [
        f"{k}: {_short(a.get(k))} -> {_short(b.get(k))}"
        for k in sorted(set(a) | set(b))
        if a.get(k) != b.get(k)
    ]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def source_change_allowed(
    old: Source,
    new: Source,
    problems_of: Callable[[Mapping[str, Any], Mapping[str, Any]], list[str]],
) -> list[str]:
    """Problems that forbid replacing ``old`` by ``new`` (a different topic or an incompatible schema)."""
    problems = []
    if old.topic != new.topic:
        problems.append(
            f"source {new.name!r}: topic {old.topic!r} -> {new.topic!r} cannot change; define a new source"
        )
    if old.dlq_topic != new.dlq_topic:
        problems.append(
            f"source {new.name!r}: dead-letter topic {old.dlq_topic!r} -> {new.dlq_topic!r} cannot change; "
            "define a new source"
        )
    if old.timestamp != new.timestamp:
        problems.append(
            f"source {new.name!r}: timestamp field {old.timestamp!r} -> {new.timestamp!r} cannot change; define a new source"
        )
    problems += [
        f"source {new.name!r}: {p}"
        for p in problems_of(old.schema.definition, new.schema.definition)
    ]
    return problems
