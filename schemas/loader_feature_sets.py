"""Read one feature set written in YAML: its features, the ``aggregations`` shorthand, its
windows against its resolution, and its other attributes.

The feature set is the one definition kind with structure inside it, so it has its own
module: every feature and aggregation entry is checked on its own and a broken one is
remembered (``Placed.broken_features``), so the rest of the set still loads and a feature
service naming a broken feature is not reported twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from headwater.schemas.aggregations import AGGREGATION_FUNCTIONS, unknown_function
from headwater.schemas.definitions import REQUEST_TYPES, Feature, FeatureSet
from headwater.schemas.durations import parse_duration
from headwater.schemas.loader_problems import Collector, Placed
from headwater.schemas.monitoring import Monitoring, read_monitoring

__all__ = ["FEATURE_SET_KEYS", "read_feature_set"]

FEATURE_SET_KEYS = {
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
    "monitoring",
    "request_schema",
    "request_features",
}
_FEATURE_KEYS = {
    "name",
    "function",
    "field",
    "window",
    "n",
    "tags",
    "monitoring",
    "percentiles",
    "accuracy",
    "precision",
    "k",
    "max_keys",
    "where",
    "offset",
    "resolution",
}
_COUNTS = ("n", "precision", "k", "max_keys")
_AGGREGATION_KEYS = {"field", "functions", "windows"}
_FEATURE_EXAMPLE = "{name: spend_1h, function: sum, field: amount, window: 1h}"
_AGGREGATION_EXAMPLE = "{field: amount, functions: [sum, mean], windows: [1h, 1d]}"


def _duration(c: Collector, where: str, value: Any) -> int | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        c.add(where, str(exc))
        return None


def _window(
    c: Collector, where: str, value: Any, resolution: int | None, resolution_text: Any
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


def _parameters(c: Collector, where: str, raw: Mapping[str, Any]) -> dict[str, Any] | None:
    """A feature's function parameters, typed; ``None`` after a problem (added to ``c``)."""
    out: dict[str, Any] = {}
    ok = True
    for name in _COUNTS:
        value = raw.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            c.add(f"{where}.{name}", f"expected a whole number like {name}: 5, got {value!r}")
            ok = False
        out[name] = value
    percentiles = raw.get("percentiles")
    if percentiles is not None:
        numbers = percentiles if isinstance(percentiles, list) else [percentiles]
        if not all(isinstance(q, int | float) and not isinstance(q, bool) for q in numbers):
            c.add(
                f"{where}.percentiles",
                f"expected a list of quantiles like [0.5, 0.9, 0.99], got {percentiles!r}",
            )
            ok = False
        else:
            out["percentiles"] = tuple(float(q) for q in numbers)
    accuracy = raw.get("accuracy")
    if accuracy is not None and (
        not isinstance(accuracy, int | float) or isinstance(accuracy, bool)
    ):
        c.add(f"{where}.accuracy", f"expected a relative error like 0.01, got {accuracy!r}")
        ok = False
    out["accuracy"] = accuracy
    condition = raw.get("where")
    if condition is not None and not isinstance(condition, str):
        c.add(
            f"{where}.where",
            f"expected a condition string like \"status == 'declined'\", got {condition!r}",
        )
        ok = False
    out["where"] = condition
    for key, name in (("offset", "offset_ms"), ("resolution", "resolution_ms")):
        text = raw.get(key)
        out[name] = _duration(c, f"{where}.{key}", text)
        ok = ok and (text is None or out[name] is not None)
    return out if ok else None


def _tags(c: Collector, where: str, value: Any) -> tuple[str, ...]:
    """A feature's tags: a list of names (a problem is added for anything else)."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(t, str) and t for t in value):
        c.add(where, f"tags must be a list of names, e.g. tags: [pii]; got {value!r}")
        return ()
    return tuple(value)


def _known_function(c: Collector, where: str, function: str) -> bool:
    """Whether ``function`` is an aggregation function; a problem at ``where`` (the name's
    own path) when not."""
    if function in AGGREGATION_FUNCTIONS:
        return True
    c.add(where, unknown_function(function))
    return False


def read_feature_set(
    c: Collector, where: str, item: Mapping[str, Any], placed: Placed[Any]
) -> FeatureSet | None:
    """The feature set written at ``where``, or ``None`` when it cannot be built (every
    problem added to ``c``)."""
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

    for j, entry in enumerate(c.entries(f"{where}.features", item.get("features"))):
        fwhere = f"{where}.features[{j}]"
        raw = c.mapping(fwhere, entry, _FEATURE_KEYS, _FEATURE_EXAMPLE)
        if raw is None:
            continue
        name = str(raw.get("name", ""))
        function = str(raw.get("function", ""))
        known = _known_function(c, f"{fwhere}.function", function)
        good, window = _window(
            c, f"{fwhere}.window", raw.get("window"), resolution, resolution_text
        )
        parameters = _parameters(c, fwhere, raw)
        if not (good and known) or parameters is None:
            placed.broken_features.add(name)
            continue
        add(
            fwhere,
            f"{fwhere}.name",
            name,
            function=function,
            field=raw.get("field"),
            window_ms=window,
            **parameters,
            tags=_tags(c, f"{fwhere}.tags", raw.get("tags")),
            monitoring=read_monitoring(
                c.add, f"{fwhere}.monitoring", raw.get("monitoring"), feature=True
            ),
        )
    for j, entry in enumerate(c.entries(f"{where}.aggregations", item.get("aggregations"))):
        awhere = f"{where}.aggregations[{j}]"
        agg = c.mapping(awhere, entry, _AGGREGATION_KEYS, _AGGREGATION_EXAMPLE)
        if agg is None:
            continue
        functions = c.names(f"{awhere}.functions", agg.get("functions"), "[sum, mean]") or []
        listed = not isinstance(agg.get("functions"), str)
        unknown = {
            function
            for k, function in enumerate(functions)
            if not _known_function(
                c, f"{awhere}.functions" + (f"[{k}]" if listed else ""), function
            )
        }
        windows = agg.get("windows") or [None]
        if not isinstance(windows, list):
            windows = [windows]
        for k, w in enumerate(windows):
            suffix = str(w).strip() if w is not None else "lifetime"
            good, window = _window(c, f"{awhere}.windows[{k}]", w, resolution, resolution_text)
            for function in functions:
                name = f"{agg.get('field')}_{function}_{suffix}"
                if not good or function in unknown:
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
    request_schema = _string_mapping(
        c, f"{where}.request_schema", item.get("request_schema"), "{amount: double}"
    )
    for field_name, type_name in list(request_schema.items()):
        if type_name not in REQUEST_TYPES:
            c.add(
                f"{where}.request_schema.{field_name}",
                f"unknown type {type_name!r}; expected one of {', '.join(REQUEST_TYPES)}, "
                f"e.g. {field_name}: double",
            )
            del request_schema[field_name]
    request_features = _string_mapping(
        c,
        f"{where}.request_features",
        item.get("request_features"),
        "{amount_vs_avg: 'request.amount / nullif(avg_amount_7d, 0)'}",
    )
    for name in list(request_features):
        if name in placed.features:
            c.add(
                f"{where}.request_features.{name}",
                f"request feature {name!r} has the name of the stored feature at "
                f"{where}{placed.features[name]}; rename one",
            )
            del request_features[name]
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
        monitoring=read_monitoring(c.add, f"{where}.monitoring", item.get("monitoring"))
        or Monitoring(),
        request_schema=request_schema,
        request_features=request_features,
    )


def _string_mapping(c: Collector, where: str, value: Any, example: str) -> dict[str, str]:
    """A mapping of names to strings (a problem at ``where`` for anything else)."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        c.add(where, f"expected a mapping of name -> text, like {example}, got {value!r}")
        return {}
    return dict(value)
