"""Resolving feature references (``set[@vN]:feature`` or a feature service) to plans."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from headwater.schemas.definitions import Definitions, Entity, FeatureRef, FeatureSet
from headwater.schemas.errors import UnknownNameError
from headwater.schemas.expressions import ExpressionError
from headwater.schemas.request_features import RequestFeature, compile_request_feature
from headwater.schemas.tiles import FeatureSetPlan
from headwater.serving.errors import BadRequestError, NotFoundError

__all__ = ["FeatureResolver", "Output", "RequestColumn", "ResolvedFeatures", "resolve_features"]


@dataclass(frozen=True)
class RequestColumn:
    """A requested request-time feature, and where its stored dependencies are read.

    ``inputs[k]`` is the index in :attr:`ResolvedFeatures.columns` of
    ``feature.dependencies[k]``.
    """

    feature: RequestFeature
    inputs: tuple[int, ...]


Output = tuple[Literal["stored", "request"], int]
"""One requested feature: ``("stored", index in columns)`` or ``("request", index in
request_columns)``."""


@dataclass(frozen=True)
class ResolvedFeatures:
    """Requested features grouped by feature set, remembering the request order.

    ``columns[i]`` is ``(plan index, feature index)`` of a stored feature to read: each
    requested stored feature, then the dependencies of requested request features that were
    not requested themselves (read, used, not returned). ``outputs`` says, in request order,
    where each requested feature's values come from.
    """

    refs: tuple[str, ...]
    plans: tuple[FeatureSetPlan, ...]
    entities: tuple[Entity, ...]
    """The entity of each plan's feature set."""
    columns: tuple[tuple[int, int], ...]
    outputs: tuple[Output, ...] = ()
    request_columns: tuple[RequestColumn, ...] = ()

    def __post_init__(self) -> None:
        if not self.outputs:  # only stored features, each requested: the plain case
            object.__setattr__(
                self, "outputs", tuple(("stored", i) for i in range(len(self.columns)))
            )

    @property
    def entity_keys(self) -> tuple[tuple[str, ...], ...]:
        """The key field names of each plan's entity."""
        return tuple(e.keys for e in self.entities)

    @property
    def request_fields(self) -> dict[str, str]:
        """Request field -> declared type, of every request field the lookup must send."""
        fields: dict[str, str] = {}
        for column in self.request_columns:
            fields.update(column.feature.request_types)
        return fields

    def output_names(self) -> list[str]:
        """The bare feature name of each requested feature, in request order."""
        return [
            self.plans[self.columns[i][0]].feature_set.features[self.columns[i][1]].name
            if kind == "stored"
            else self.request_columns[i].feature.name
            for kind, i in self.outputs
        ]

    def output_sets(self) -> list[FeatureSet]:
        """The feature-set version of each requested feature, in request order."""
        return [
            self.plans[self.columns[i][0]].feature_set
            if kind == "stored"
            else self.request_columns[i].feature.feature_set
            for kind, i in self.outputs
        ]

    @property
    def pinned_refs(self) -> tuple[str, ...]:
        """The requested features as ``set@vN:feature``: what to resolve to get them again."""
        return tuple(
            f"{fs.qualified_name}:{name}"
            for fs, name in zip(self.output_sets(), self.output_names(), strict=True)
        )


class _Builder:
    """Collects plans and stored columns, each once, while references are resolved."""

    def __init__(self, defs: Definitions) -> None:
        self.defs = defs
        self.plans: list[FeatureSetPlan] = []
        self.index: dict[str, int] = {}
        self.columns: dict[tuple[int, int], int] = {}  # (plan, feature) -> column, in order

    def column(self, fs: FeatureSet, feature_index: int) -> int:
        """The column of feature ``feature_index`` of ``fs``, added if new."""
        if fs.qualified_name not in self.index:
            self.index[fs.qualified_name] = len(self.plans)
            self.plans.append(FeatureSetPlan(fs, self.defs.source(fs.source)))
        return self.columns.setdefault(
            (self.index[fs.qualified_name], feature_index), len(self.columns)
        )


def resolve_features(
    defs: Definitions,
    features: Sequence[str] | None = None,
    feature_service: str | None = None,
) -> ResolvedFeatures:
    """The requested features, grouped by feature set.

    A request feature adds the stored features it reads as columns of their own (hidden:
    read, never returned unless requested too).

    Raises:
        NotFoundError: a feature set (or version), feature or service does not exist; the
            message lists the known names and the field names the reference (404 over HTTP).
        BadRequestError: no features requested, or a reference that does not parse.
    """
    if feature_service is not None:
        try:
            features = defs.feature_service(feature_service).features
        except UnknownNameError as exc:
            raise NotFoundError(str(exc), field="feature_service") from None
    if not features:
        msg = "no features requested; give 'features': ['set:feature', ...] or a 'feature_service'"
        raise BadRequestError(msg, field="features")
    builder = _Builder(defs)
    stored: list[tuple[int, int]] = []  # (output position, column)
    requested: list[tuple[int, RequestFeature]] = []
    for i, text in enumerate(features):
        field = "feature_service" if feature_service is not None else f"features[{i}]"
        try:
            ref = FeatureRef.parse(text)
        except ValueError as exc:
            raise BadRequestError(str(exc), field=field) from exc
        try:
            fs = defs.feature_set(ref.feature_set, ref.version)
            if ref.feature in fs.request_features:
                requested.append((i, compile_request_feature(defs, fs, ref.feature)))
                continue
            feature_index = fs.features.index(fs.feature(ref.feature))
        except UnknownNameError as exc:
            raise NotFoundError(_unknown(exc, ref, defs), field=field) from None
        except ExpressionError as exc:  # a set it reads was retired since apply
            raise NotFoundError(str(exc), field=field) from None
        stored.append((i, builder.column(fs, feature_index)))
    outputs: list[Output] = [("stored", 0)] * len(features)
    for i, column in stored:
        outputs[i] = ("stored", column)
    request_columns = []
    for k, (i, feature) in enumerate(requested):
        inputs = tuple(
            builder.column(
                d.feature_set, d.feature_set.features.index(d.feature_set.feature(d.feature))
            )
            for d in feature.dependencies
        )
        request_columns.append(RequestColumn(feature, inputs))
        outputs[i] = ("request", k)
    return ResolvedFeatures(
        refs=tuple(features),
        plans=tuple(builder.plans),
        entities=tuple(defs.entity(p.feature_set.entity) for p in builder.plans),
        columns=tuple(builder.columns),
        outputs=tuple(outputs),
        request_columns=tuple(request_columns),
    )


def _unknown(exc: UnknownNameError, ref: FeatureRef, defs: Definitions) -> str:
    """The 404 message: a missing feature's message lists the set's request features too."""
    if exc.kind != "feature":
        return str(exc)
    fs = defs.feature_set(ref.feature_set, ref.version)
    if not fs.request_features:
        return str(exc)
    return f"{exc}; request features: {list(fs.request_features)}"


class FeatureResolver:
    """``resolve_features`` remembered per definitions object, for the serving hot path:
    compiling plans (expressions, aggregators) costs more than a lookup itself."""

    _LIMIT = 10_000

    def __init__(self) -> None:
        self._defs: Definitions | None = None
        self._cache: dict[tuple[tuple[str, ...] | None, str | None], ResolvedFeatures] = {}

    def __call__(
        self, defs: Definitions, features: Sequence[str] | None, feature_service: str | None
    ) -> ResolvedFeatures:
        if defs is not self._defs:
            self._defs, self._cache = defs, {}
        key = (tuple(features) if features is not None else None, feature_service)
        resolved = self._cache.get(key)
        if resolved is None:
            resolved = resolve_features(defs, features, feature_service)
            if len(self._cache) < self._LIMIT:
                self._cache[key] = resolved
        return resolved
