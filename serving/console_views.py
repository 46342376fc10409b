"""The catalog as the web console asks for it: one page of search hits, a source with its
schema, and the differences between two versions of a feature set.

Plain data (dicts and lists), like ``serving.catalog_views``, so the answers can be tested
without a server. The console's pages must stay fast on a catalog of hundreds of feature
sets, so search answers one page and the total instead of everything.
"""

from __future__ import annotations

from typing import Any

from headwater.schemas.avro import AvroSchema
from headwater.schemas.definitions import Definitions, Feature, FeatureSet, Source
from headwater.schemas.plan import feature_set_changes
from headwater.schemas.tiles import FeatureSetPlan
from headwater.serving.catalog_views import feature_set_summary, set_search_text
from headwater.serving.errors import BadRequestError, NotFoundError

__all__ = ["MAX_PAGE", "search_catalog", "source_view", "version_diff"]

MAX_PAGE = 200
"""The most hits one search page answers (``limit``)."""


def _feature_text(f: Feature) -> str:
    return f"{f.name} {f.function} {f.field or ''} {' '.join(f.tags)}".lower()


def search_catalog(
    defs: Definitions, query: str, *, offset: int = 0, limit: int = 50
) -> dict[str, Any]:
    """One page of the feature sets matching ``query`` and how many match in all.

    One item per feature set, described by its newest active version (``active_versions``
    lists them all): a catalog lists what exists, the set page shows its versions.

    A set matches when every word of the query (case-insensitive substring) is in its name,
    description, owner, entity, source, tags or labels, or in one of its features (name,
    function, field, tags); ``matched_features`` names the features a word was found in, so
    the console can show why a set was listed. Sets are ordered by name.

    Raises:
        BadRequestError: ``offset`` below 0 or ``limit`` outside 1..MAX_PAGE.
    """
    if offset < 0:
        raise BadRequestError(f"offset must be 0 or more, got {offset}", field="query.offset")
    if not 1 <= limit <= MAX_PAGE:
        msg = f"limit must be between 1 and {MAX_PAGE}, got {limit}; page with offset"
        raise BadRequestError(msg, field="query.limit")
    words = [w.lower() for w in query.split() if w]
    latest: dict[str, FeatureSet] = {}
    versions: dict[str, list[int]] = {}
    for fs in defs.feature_sets:  # one entry per set: its newest active version
        versions.setdefault(fs.name, []).append(fs.version)
        if fs.name not in latest or fs.version > latest[fs.name].version:
            latest[fs.name] = fs
    hits: list[tuple[FeatureSet, list[str]]] = []
    for fs in sorted(latest.values(), key=lambda s: s.name):
        set_text = set_search_text(fs)
        texts = {f.name: _feature_text(f) for f in fs.features}
        every = set_text + " " + " ".join(texts.values())
        if not all(w in every for w in words):
            continue
        named = [n for n, t in texts.items() if words and any(w in t for w in words)]
        hits.append((fs, named))
    return {
        "query": query,
        "total": len(hits),
        "offset": offset,
        "limit": limit,
        "items": [
            _search_item(fs, sorted(versions[fs.name]), named)
            for fs, named in hits[offset : offset + limit]
        ],
    }


_ITEM_FIELDS = ("name", "version", "entity", "source", "description", "owner", "tags", "labels")


def _search_item(fs: FeatureSet, active: list[int], named: list[str]) -> dict[str, Any]:
    """One search hit: the catalog's summary fields of the set, its versions and features."""
    summary = feature_set_summary(fs)
    return {
        **{k: summary[k] for k in _ITEM_FIELDS},
        "active_versions": active,
        "features": len(fs.features),
        "matched_features": named,
    }


def _schema_fields(schema: AvroSchema) -> list[dict[str, Any]]:
    docs = {f.get("name"): f.get("doc", "") for f in schema.definition.get("fields", [])}
    return [
        {
            "name": name,
            "type": kind,
            "nullable": name in schema.nullable,
            "doc": docs.get(name, ""),
        }
        for name, kind in schema.field_types.items()
    ]


def source_view(defs: Definitions, name: str) -> dict[str, Any]:
    """A source: its topics, event-time field, schema fields with their types, and the
    feature sets reading it.

    Raises:
        NotFoundError: no source is called ``name`` (the message lists the known ones).
    """
    found = [s for s in defs.sources if s.name == name]
    if not found:
        known = sorted(s.name for s in defs.sources)
        raise NotFoundError(f"unknown source {name!r}; known: {known}", field="path.source")
    source: Source = found[0]
    return {
        "name": source.name,
        "description": source.description,
        "topic": source.topic,
        "dead_letter_topic": source.dlq_topic,
        "timestamp": source.timestamp,
        "schema_subject": source.subject,
        "fields": _schema_fields(source.schema),
        "feature_sets": sorted({fs.name for fs in defs.feature_sets if fs.source == name}),
    }


def version_diff(
    versions: list[tuple[FeatureSet, str]],
    sources: Definitions,
    name: str,
    old: int,
    new: int,
) -> dict[str, Any]:
    """What changed from version ``old`` to ``new`` of feature set ``name``: the breaking
    and compatible changes in the words of ``headwater apply``'s plan, and both definitions.

    ``versions``: every stored version with its status (``Catalog.feature_set_versions``);
    ``sources``: definitions holding the sources the versions read (retired ones included).

    Raises:
        NotFoundError: unknown feature set, or a version it does not have.
    """
    if not versions:
        raise NotFoundError(f"unknown feature set {name!r}", field="path.name")
    by_version = {fs.version: (fs, status) for fs, status in versions}
    for label, wanted in (("from", old), ("to", new)):
        if wanted not in by_version:
            msg = f"feature set {name!r} has no version {wanted}; it has {sorted(by_version)}"
            raise NotFoundError(msg, field=f"query.{label}")
    known = {s.name: s for s in sources.sources}

    def partial_keys(fs: FeatureSet) -> frozenset[str]:
        source = known.get(fs.source)
        if source is None:  # a source no longer stored: compare features by name only
            return frozenset(f.name for f in fs.features)
        return FeatureSetPlan(fs, source).aggregator.partial_keys

    (a, a_status), (b, b_status) = by_version[old], by_version[new]
    breaking, compatible = feature_set_changes(a, b, partial_keys)
    return {
        "feature_set": name,
        "from": feature_set_summary(a, status=a_status),
        "to": feature_set_summary(b, status=b_status),
        "breaking": breaking,
        "compatible": compatible,
    }
