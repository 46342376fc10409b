"""Online/offline consistency, measured: logged online responses recomputed offline.

For every logged response row, point-in-time retrieval computes the same features (the
same feature-set versions) for the same entity at ``t = served_at``, and each value is
compared exactly. A mismatch means the online store served something the offline history
does not support at that time: events that arrived late (after serving), a worker that was
behind, or a bug. On a quiet, caught-up stream the rate is 0.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from headwater.connectors.catalog import Catalog
from headwater.connectors.offline_delta import DeltaOfflineStore
from headwater.serving.features import resolve_features
from headwater.serving.historical import column_names, get_historical_features
from headwater.serving.response_log import read_response_log

__all__ = ["ConsistencyReport", "FeatureConsistency", "check_consistency"]


@dataclass
class FeatureConsistency:
    feature: str
    compared: int = 0
    mismatches: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.mismatches / self.compared if self.compared else 0.0


@dataclass
class ConsistencyReport:
    responses: int
    features: list[FeatureConsistency]

    @property
    def mismatches(self) -> int:
        return sum(f.mismatches for f in self.features)


def _same(online: Any, offline: Any) -> bool:
    """Exact: same type and value; floats agree to the bit (JSON round-trips them)."""
    return type(online) is type(offline) and online == offline


def check_consistency(
    offline: DeltaOfflineStore,
    catalog: Catalog,
    *,
    since_ms: int | None = None,
    limit: int | None = None,
    examples: int = 3,
) -> ConsistencyReport:
    """Recompute logged responses offline and count mismatches per feature."""
    logged = read_response_log(offline.location, since_ms=since_ms)
    if limit is not None:
        logged = logged.slice(max(0, logged.num_rows - limit))
    defs = catalog.definitions(include_retired=True)
    groups: dict[str, list[int]] = defaultdict(list)
    for i, features in enumerate(logged.column("features").to_pylist()):
        groups[features].append(i)
    served = logged.column("served_at_ms").to_pylist()
    entities = [json.loads(e) for e in logged.column("entity").to_pylist()]
    values = [json.loads(v) for v in logged.column("values").to_pylist()]
    by_feature: dict[str, FeatureConsistency] = {}
    for features_json, rows in groups.items():
        logged_refs = json.loads(features_json)
        # Request-time features are computed from request fields the log does not keep, so
        # only stored features are recomputed (``positions``: their place in the response).
        kinds = resolve_features(defs, logged_refs).outputs
        positions = [j for j, (kind, _) in enumerate(kinds) if kind == "stored"]
        if not positions:
            continue
        refs = [logged_refs[j] for j in positions]
        resolved = resolve_features(defs, refs)
        keys = sorted({k for key_names in resolved.entity_keys for k in key_names})
        table = pa.table(
            {
                **{k: [str(entities[i].get(k)) for i in rows] for k in keys},
                "event_timestamp": pa.array([served[i] for i in rows], pa.int64()),
            }
        )
        recomputed = get_historical_features(offline, resolved, table)
        for j, ref, name in zip(positions, refs, column_names(resolved), strict=True):
            stats = by_feature.setdefault(ref, FeatureConsistency(ref))
            for row, offline_value in zip(rows, recomputed.column(name).to_pylist(), strict=True):
                online_value = values[row][j]
                stats.compared += 1
                if not _same(online_value, offline_value):
                    stats.mismatches += 1
                    if len(stats.examples) < examples:
                        stats.examples.append(
                            {
                                "entity": entities[row],
                                "served_at_ms": served[row],
                                "online": online_value,
                                "offline": offline_value,
                            }
                        )
    return ConsistencyReport(
        responses=logged.num_rows, features=sorted(by_feature.values(), key=lambda f: f.feature)
    )
