"""Definition objects: entities, sources, feature sets, features and feature services.

They are frozen, keyword-only dataclasses that check their own invariants, so a definition
built from Python is as safe as one loaded from YAML. Creating one never touches the network;
``headwater apply`` does the side effects.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, TypeVar

from headwater.schemas.aggregations import (
    AGGREGATION_FUNCTIONS,
    BULKY_FUNCTIONS,
    unknown_function,
)
from headwater.schemas.avro import AvroSchema
from headwater.schemas.errors import DefinitionError, EventError, UnknownNameError
from headwater.schemas.feature_parameters import parameter_problem
from headwater.schemas.monitoring import Monitoring

__all__ = [
    "KEY_SEPARATOR",
    "MAX_BULKY_TILES",
    "PII_TAG",
    "REQUEST_TYPES",
    "Definitions",
    "Entity",
    "Feature",
    "FeatureRef",
    "FeatureService",
    "FeatureSet",
    "Source",
]

KEY_SEPARATOR = "\x1f"
"""Joins the fields of an entity key of several fields: in Kafka message keys (so an entity's
events share a partition), in Redis keys and in the offline join. A field value of such a key
that contains it is refused: ``("a\x1fb", "c")`` and ``("a", "b\x1fc")`` would be one entity."""

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _check_name(kind: str, name: str) -> None:
    if not _NAME.match(name):
        msg = (
            f"{kind} name {name!r} is not valid; use letters, digits and underscores, "
            "starting with a letter or underscore"
        )
        raise ValueError(msg)


@dataclass(frozen=True, kw_only=True)
class Entity:
    """A key that features describe; all of an entity's events travel on one partition."""

    name: str
    keys: tuple[str, ...]
    description: str = ""

    def __post_init__(self) -> None:
        _check_name("entity", self.name)
        if not self.keys:
            msg = f"entity {self.name!r} has no keys; give at least one key field"
            raise ValueError(msg)
        if len(set(self.keys)) != len(self.keys):
            msg = f"entity {self.name!r} repeats a key in {list(self.keys)}"
            raise ValueError(msg)

    def key_from_parts(self, parts: Sequence[Any]) -> tuple[str, ...]:
        """The entity key of one event or request row, given its key fields' values in the order
        of ``keys``: each value as text (``str`` of non-text values), as stored and looked up.

        Raises:
            EventError: in a key of several fields, a value holds ``KEY_SEPARATOR`` (the field
                is named).
        """
        return self.keys_of_columns([[p] for p in parts])[0]

    def keys_of_columns(self, columns: Sequence[Sequence[Any]]) -> list[tuple[str, ...]]:
        """``key_from_parts`` of many rows given column-wise (one sequence per key field, in
        the order of ``keys``), without building each row: the online lookup's path.

        Raises:
            EventError: as ``key_from_parts``.
        """
        texts = [[v if isinstance(v, str) else str(v) for v in column] for column in columns]
        if len(texts) == 1:
            return [(text,) for text in texts[0]]
        for name, column in zip(self.keys, texts, strict=True):
            for text in column:
                if KEY_SEPARATOR in text:
                    raise EventError(
                        f"entity key field {name!r}: {text!r} contains the character U+001F, which "
                        f"joins the fields of the key of entity {self.name!r}; remove it from the value",
                        field=name,
                        reason="invalid_key",
                    )
        return list(zip(*texts, strict=True))

    def key_of(self, record: Mapping[str, Any]) -> tuple[str, ...]:
        """The entity key of a record (see ``key_from_parts``)."""
        return self.key_from_parts([record.get(k) for k in self.keys])

    def message_key(self, record: Mapping[str, Any]) -> bytes:
        """The Kafka message key of a record: its entity key, joined, so that every event of an
        entity lands on one partition (the worker's per-entity state relies on it)."""
        return KEY_SEPARATOR.join(self.key_of(record)).encode()


@dataclass(frozen=True, kw_only=True)
class Source:
    """A Kafka topic, the Avro schema of its events and the event-time field."""

    name: str
    schema: AvroSchema
    timestamp: str
    topic: str = ""
    """Default ``raw.<name>``."""
    dlq_topic: str = ""
    """Where events of this source that cannot be used go, with the reason; default
    ``dlq.<name>``."""
    description: str = ""
    defaulted_topics: frozenset[str] = field(
        default=frozenset(), init=False, compare=False, repr=False
    )
    """Which of ``topic`` and ``dlq_topic`` took their default name (``with_topic_prefix``
    prefixes only those)."""

    def __post_init__(self) -> None:
        _check_name("source", self.name)
        defaulted = set()
        if not self.topic:
            object.__setattr__(self, "topic", f"raw.{self.name}")
            defaulted.add("topic")
        if not self.dlq_topic:
            object.__setattr__(self, "dlq_topic", f"dlq.{self.name}")
            defaulted.add("dlq_topic")
        object.__setattr__(self, "defaulted_topics", frozenset(defaulted))
        if self.timestamp not in self.schema.field_types:
            msg = (
                f"source {self.name!r}: timestamp field {self.timestamp!r} is not in schema "
                f"{self.schema.name!r}; its fields are {sorted(self.schema.field_types)}"
            )
            raise ValueError(msg)

    @property
    def subject(self) -> str:
        """The schema registry subject of the topic's values (Confluent's TopicNameStrategy),
        under which producers, the worker and the catalog find the source's schemas."""
        return f"{self.topic}-value"

    def with_topic_prefix(self, prefix: str) -> Source:
        """This source with ``prefix`` before its default topic names (``kafka.topic_prefix``);
        names given explicitly stay as written."""
        if not prefix or not self.defaulted_topics:
            return self
        names = {name: prefix + getattr(self, name) for name in self.defaulted_topics}
        return replace(self, **names)


REQUEST_TYPES = ("boolean", "int", "long", "float", "double", "string")
"""The types a request field may be declared with (``request_schema``), as in Avro."""

PII_TAG = "pii"
"""The tag of features (or whole feature sets) holding personal data (DESIGN §8)."""


@dataclass(frozen=True, kw_only=True)
class Feature:
    """One output column: ``function`` of ``field`` over ``window_ms`` (``None`` = lifetime),
    over the events for which ``where`` holds, ``offset_ms`` before the time asked about."""

    name: str
    function: str
    field: str | None = None
    window_ms: int | None = None
    n: int | None = None
    """How many values ``last_n``, ``first_n`` and ``last_distinct_n`` keep."""
    tags: tuple[str, ...] = ()
    """Labels such as ``pii`` (reading a ``pii`` feature over the API needs a grant)."""
    monitoring: Monitoring | None = None
    """This feature's own drift limits (``schemas.monitoring``); metadata."""
    percentiles: tuple[float, ...] = ()
    """The quantiles ``approx_percentile`` gives, in [0, 1]; its value lists them in order."""
    accuracy: float | None = None
    """``approx_percentile``'s relative accuracy (default ``sketches.DEFAULT_ACCURACY``)."""
    precision: int | None = None
    """``approx_count_distinct``'s HyperLogLog precision, 4 to 18 (default 12)."""
    k: int | None = None
    """How many of the most frequent values ``top_k`` gives."""
    max_keys: int | None = None
    """The most keys a ``histogram`` value holds: the most frequent ones (default 100)."""
    where: str | None = None
    """Expression: only events for which it is true feed this feature (``count_if``)."""
    offset_ms: int | None = None
    """The window ends this long before the time asked about (``window: 1d, offset: 7d``)."""
    resolution_ms: int | None = None
    """This feature's tile length, a multiple of the set's (default ``FeatureSet.tile_ms``)."""

    def __post_init__(self) -> None:
        _check_name("feature", self.name)
        object.__setattr__(self, "tags", tuple(self.tags))
        object.__setattr__(self, "percentiles", tuple(self.percentiles))
        if self.function not in AGGREGATION_FUNCTIONS:
            raise ValueError(unknown_function(self.function))
        problem = parameter_problem(self)
        if problem:
            msg = f"feature {self.name!r}: {problem}"
            raise ValueError(msg)


_TILE_LADDER = (60_000, 300_000, 900_000, 3_600_000, 10_800_000, 21_600_000, 86_400_000)
"""Tile lengths a bulky feature may get by default: 1m, 5m, 15m, 1h, 3h, 6h, 1d."""
MAX_BULKY_TILES = 720
"""A bulky feature's default tile keeps its window at most this many tiles long."""


@dataclass(frozen=True, kw_only=True)
class FeatureSet:
    """A versioned group of features over one source and one entity."""

    name: str
    entity: str
    source: str
    features: tuple[Feature, ...]
    resolution_ms: int = 60_000
    ttl_ms: int | None = None
    version: int = 1
    description: str = ""
    owner: str = ""
    tags: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    filter: str | None = None
    """Expression: only events for which it is true feed the features."""
    transforms: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """New fields computed per event, in order: name -> expression."""
    relations: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """Other entities this set's events refer to: entity name -> field holding its key."""
    monitoring: Monitoring = field(default_factory=Monitoring)
    """Health limits of ``headwater monitor`` (``schemas.monitoring``); metadata."""
    request_schema: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """Fields a lookup sends along (``request.<field>`` in expressions): name -> type, one
    of :data:`REQUEST_TYPES`."""
    request_features: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """Features computed at lookup time (online) or per label row (offline): name ->
    expression over request fields and stored features (``schemas.request_features``)."""

    def __post_init__(self) -> None:
        _check_name("feature set", self.name)
        self._check_request_definitions()
        if self.version < 1:
            msg = f"feature set {self.name!r}: version must be 1 or more, got {self.version}"
            raise ValueError(msg)
        if not self.features:
            msg = f"feature set {self.name!r} has no features"
            raise ValueError(msg)
        names = [f.name for f in self.features]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            msg = f"feature set {self.name!r} defines {duplicates} more than once"
            raise ValueError(msg)
        for f in self.features:
            if f.resolution_ms is not None and f.resolution_ms % self.resolution_ms:
                msg = (
                    f"feature {f.name!r}: resolution {f.resolution_ms} ms is not a multiple of "
                    f"the feature set's resolution {self.resolution_ms} ms"
                )
                raise ValueError(msg)
            tile = self.tile_ms(f)
            for what, length in (("window", f.window_ms), ("offset", f.offset_ms)):
                if length is not None and length % tile:
                    msg = (
                        f"feature {f.name!r}: {what} {length} ms is not a multiple of the "
                        f"resolution {tile} ms"
                    )
                    raise ValueError(msg)
        for attribute in ("labels", "transforms", "relations"):
            object.__setattr__(self, attribute, MappingProxyType(dict(getattr(self, attribute))))

    @property
    def max_window_ms(self) -> int:
        """The longest window."""
        return max((f.window_ms for f in self.features if f.window_ms), default=self.resolution_ms)

    @property
    def reach_ms(self) -> int:
        """How far back from the time asked about an event can still count: the longest
        window plus its offset and the rest of its first tile (a coarse tile starts before
        the set's). Online keeps the tiles of this span."""
        return max(
            (
                f.window_ms + (f.offset_ms or 0) + self.tile_ms(f) - self.resolution_ms
                for f in self.features
                if f.window_ms
            ),
            default=self.resolution_ms,
        )

    def tile_ms(self, feature: Feature) -> int:
        """The tile length of ``feature``'s window: its own ``resolution``, else the set's,
        except for a bulky function (sketches and value counts: ``BULKY_FUNCTIONS``) whose
        window would span more than ``MAX_BULKY_TILES`` of them. That one takes the shortest
        of 1m, 5m, 15m, 1h, 3h, 6h, 1d that is a multiple of the set's resolution, divides
        its window and offset, and keeps the window within ``MAX_BULKY_TILES`` tiles (the
        longest that divides them when none does), so its state per entity stays bounded.
        """
        if feature.resolution_ms is not None:
            return feature.resolution_ms
        r = self.resolution_ms
        window = feature.window_ms
        if (
            window is None
            or feature.function not in BULKY_FUNCTIONS
            or window // r <= MAX_BULKY_TILES
        ):
            return r
        fitting = [
            t
            for t in _TILE_LADDER
            if t > r and t % r == 0 and window % t == 0 and (feature.offset_ms or 0) % t == 0
        ]
        for t in fitting:
            if window // t <= MAX_BULKY_TILES:
                return t
        return fitting[-1] if fitting else r

    @property
    def qualified_name(self) -> str:
        return f"{self.name}@v{self.version}"

    def _check_request_definitions(self) -> None:
        """Names and declared types only; expressions are checked against every definition
        at load time (``schemas.request_features``), since they may read other sets. Both
        mappings are frozen, like ``transforms``."""
        for attribute in ("request_schema", "request_features"):
            object.__setattr__(self, attribute, MappingProxyType(dict(getattr(self, attribute))))
        for name, type_name in dict(self.request_schema).items():
            _check_name("request field", name)
            if type_name not in REQUEST_TYPES:
                msg = (
                    f"feature set {self.name!r}: request field {name!r} has type {type_name!r}; "
                    f"expected one of {', '.join(REQUEST_TYPES)}, e.g. {name}: double"
                )
                raise ValueError(msg)
        stored = {f.name for f in self.features}
        for name, text in dict(self.request_features).items():
            _check_name("request feature", name)
            if name in stored:
                msg = (
                    f"feature set {self.name!r}: request feature {name!r} has the name of a "
                    "stored feature of the set; rename one (both are read as "
                    f"{self.name}:{name})"
                )
                raise ValueError(msg)
            if not isinstance(text, str) or not text.strip():
                msg = (
                    f"feature set {self.name!r}: request feature {name!r} needs an expression, "
                    'e.g. "request.amount / nullif(avg_amount_7d, 0)"'
                )
                raise ValueError(msg)

    def has_feature(self, name: str) -> bool:
        """Whether ``name`` is a stored or a request feature of this set."""
        return name in self.request_features or any(f.name == name for f in self.features)

    def is_pii(self, feature: Feature) -> bool:
        """Whether ``feature`` holds personal data: tagged ``pii`` itself or in a set that is."""
        return PII_TAG in feature.tags or PII_TAG in self.tags

    def feature(self, name: str) -> Feature:
        """The feature called ``name``.

        Raises:
            UnknownNameError: the set has no such feature (its features are listed).
        """
        for f in self.features:
            if f.name == name:
                return f
        msg = f"feature set {self.name!r} has no feature {name!r}; it has {[f.name for f in self.features]}"
        raise UnknownNameError(msg, kind="feature", name=name)


@dataclass(frozen=True, kw_only=True)
class FeatureService:
    """A named list of feature references that one model consumes."""

    name: str
    features: tuple[str, ...]
    description: str = ""

    def __post_init__(self) -> None:
        _check_name("feature service", self.name)


@dataclass(frozen=True)
class FeatureRef:
    """``feature_set[@vN]:feature`` parsed; ``version`` is ``None`` for the latest."""

    feature_set: str
    feature: str
    version: int | None = None

    @classmethod
    def parse(cls, text: str) -> FeatureRef:
        match = re.match(r"^([A-Za-z_]\w*)(?:@v(\d+))?:([A-Za-z_]\w*)$", text.strip())
        if match is None:
            msg = f"feature reference {text!r} is not valid; write 'feature_set:feature' or 'feature_set@v2:feature'"
            raise ValueError(msg)
        version = int(match.group(2)) if match.group(2) else None
        return cls(match.group(1), match.group(3), version)

    def __str__(self) -> str:
        version = f"@v{self.version}" if self.version is not None else ""
        return f"{self.feature_set}{version}:{self.feature}"


@dataclass(frozen=True, kw_only=True)
class Definitions:
    """Everything one ``apply`` registers, with lookups by name."""

    entities: tuple[Entity, ...] = ()
    sources: tuple[Source, ...] = ()
    feature_sets: tuple[FeatureSet, ...] = ()
    feature_services: tuple[FeatureService, ...] = ()

    # Every lookup raises ``UnknownNameError`` (a ``FeatureStoreError`` and a ``KeyError``)
    # whose message lists the names known, so callers need not translate it.

    def entity(self, name: str) -> Entity:
        """The entity called ``name``; raises ``UnknownNameError``."""
        return _find(self.entities, name, "entity")

    def source(self, name: str) -> Source:
        """The source called ``name``; raises ``UnknownNameError``."""
        return _find(self.sources, name, "source")

    def feature_set(self, name: str, version: int | None = None) -> FeatureSet:
        """The given version of a feature set, or its latest one.

        Raises:
            UnknownNameError: no feature set ``name``, or not that version of it.
        """
        versions = [fs for fs in self.feature_sets if fs.name == name]
        if not versions:
            names = sorted({fs.name for fs in self.feature_sets})
            msg = f"unknown feature set {name!r}; known: {names}"
            raise UnknownNameError(msg, kind="feature set", name=name)
        if version is None:
            return max(versions, key=lambda fs: fs.version)
        for fs in versions:
            if fs.version == version:
                return fs
        msg = f"feature set {name!r} has no active version {version}; it has {sorted(f'v{fs.version}' for fs in versions)}"
        raise UnknownNameError(msg, kind="feature set version", name=f"{name}@v{version}")

    def feature_service(self, name: str) -> FeatureService:
        """The feature service called ``name``; raises ``UnknownNameError``."""
        return _find(self.feature_services, name, "feature service")

    def feature_sets_of(self, source: str) -> tuple[FeatureSet, ...]:
        return tuple(fs for fs in self.feature_sets if fs.source == source)

    def entity_of_source(self, source: str) -> Entity | None:
        """The entity that keys a source's messages: the one its feature sets describe
        (``None`` when no feature set reads the source yet).

        Raises:
            DefinitionError: the source's feature sets describe different entities.
        """
        entities = {fs.entity for fs in self.feature_sets_of(source)}
        if len(entities) > 1:
            msg = (
                f"source {source!r} feeds feature sets of several entities {sorted(entities)}; "
                "give each entity its own source topic"
            )
            raise DefinitionError(msg)
        return self.entity(entities.pop()) if entities else None


_Named = TypeVar("_Named", Entity, Source, FeatureSet, FeatureService)


def _find(items: tuple[_Named, ...], name: str, kind: str) -> _Named:
    for item in items:
        if item.name == name:
            return item
    msg = f"unknown {kind} {name!r}; known: {sorted(i.name for i in items)}"
    raise UnknownNameError(msg, kind=kind, name=name)
