"""Resolving feature references (``set[@vN]:feature`` or a feature service) to plans."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from headwater.schemas.definitions import Definitions, Entity, FeatureRef
from headwater.schemas.errors import UnknownNameError
from headwater.schemas.tiles import FeatureSetPlan
from headwater.serving.errors import BadRequestError, NotFoundError

__all__ = ["FeatureResolver", "ResolvedFeatures", "resolve_features"]


@dataclass(frozen=True)
class ResolvedFeatures:
    """Requested features grouped by feature set, remembering the request order.

    ``columns[i]`` is ``(plan index, feature index)`` of the i-th requested feature.
    """

    refs: tuple[str, ...]
    plans: tuple[FeatureSetPlan, ...]
    entities: tuple[Entity, ...]
    """The entity of each plan's feature set."""
    columns: tuple[tuple[int, int], ...]

    @property
    def entity_keys(self) -> tuple[tuple[str, ...], ...]:
        """The key field names of each plan's entity."""
        return tuple(e.keys for e in self.entities)

    @property
    def pinned_refs(self) -> tuple[str, ...]:
        """The requested features as ``set@vN:feature``: what to resolve to get them again."""
        pinned = []
        for p, f in self.columns:
            fs = self.plans[p].feature_set
            pinned.append(f"{fs.name}@v{fs.version}:{fs.features[f].name}")
        return tuple(pinned)


def resolve_features(
    defs: Definitions,
    features: Sequence[str] | None = None,
    feature_service: str | None = None,
) -> ResolvedFeatures:
    """The requested features, grouped by feature set.

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
    plans: list[FeatureSetPlan] = []
    index: dict[str, int] = {}
    columns = []
    for i, text in enumerate(features):
        try:
            ref = FeatureRef.parse(text)
        except ValueError as exc:
            field = "feature_service" if feature_service is not None else f"features[{i}]"
            raise BadRequestError(str(exc), field=field) from exc
        try:
            fs = defs.feature_set(ref.feature_set, ref.version)
            feature_index = fs.features.index(fs.feature(ref.feature))
        except UnknownNameError as exc:
            field = "feature_service" if feature_service is not None else f"features[{i}]"
            raise NotFoundError(str(exc), field=field) from None
        if fs.qualified_name not in index:
            index[fs.qualified_name] = len(plans)
            plans.append(FeatureSetPlan(fs, defs.source(fs.source)))
        columns.append((index[fs.qualified_name], feature_index))
    return ResolvedFeatures(
        refs=tuple(features),
        plans=tuple(plans),
        entities=tuple(defs.entity(p.feature_set.entity) for p in plans),
        columns=tuple(columns),
    )


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
