"""deploy/prometheus/alerts.yml and deploy/grafana/headwater.json name only metrics the code
exports (the worker's and the API's registries), with the labels those metrics carry."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

import headwater.serving.metrics  # registers the API's metrics
import headwater.stream_workers.metrics  # registers the worker's metrics

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "headwater.json"
BUILTIN = {"up"}
_NAME = re.compile(r"\b(headwater_[a-z_]+|up)\b(?:\{([^}]*)\})?")
_FUNCTIONS = {"time", "rate", "sum", "by", "histogram_quantile", "ignoring"}


def _exported() -> dict[str, set[str]]:
    """Every sample name the registries can produce, with the family's label names."""
    assert headwater.serving.metrics and headwater.stream_workers.metrics
    names: dict[str, set[str]] = {}
    for collector in list(REGISTRY._collector_to_names):
        for family in collector.collect():
            # A metric's declared labels; a custom collector's families declare theirs.
            labels = set(getattr(collector, "_labelnames", ()))
            labels |= set(getattr(family, "_labelnames", ()))
            for sample in family.samples:
                labels |= set(sample.labels)
            suffixes = {
                "counter": ["_total", "_created"],
                "histogram": ["_bucket", "_count", "_sum", "_created"],
                "gauge": [""],
            }.get(family.type, [""])
            for suffix in suffixes:
                names.setdefault(family.name + suffix, set()).update(labels)
    for collector, sample_names in REGISTRY._collector_to_names.items():
        for name in sample_names:
            names.setdefault(name, set()).update(getattr(collector, "_labelnames", ()))
    return names


def _exprs() -> list[tuple[str, str]]:
    rules = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    out = [(f"alert {r['alert']}", r["expr"]) for g in rules["groups"] for r in g["rules"]]
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    for panel in dashboard["panels"]:
        out += [(f"panel {panel['title']!r}", t["expr"]) for t in panel["targets"]]
    return out


def test_alert_rules_are_well_formed() -> None:
    rules = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    names = set()
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
            assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
            assert rule["annotations"]["summary"], rule["alert"]
            names.add(rule["alert"])
    must = {
        "HeadwaterFeatureSetStale",
        "HeadwaterPartitionStale",
        "HeadwaterConsumerLag",
        "HeadwaterDeadLetterRate",
        "HeadwaterFeatureDrift",
        "HeadwaterConsistencyMismatch",
        "HeadwaterWorkerDown",
    }
    assert must <= names


@pytest.mark.parametrize(("where", "expr"), _exprs())
def test_every_metric_named_is_exported_with_its_labels(where: str, expr: str) -> None:
    exported = _exported()
    found = _NAME.findall(expr)
    assert found, f"{where}: names no metric"
    for name, selector in found:
        if name in BUILTIN:
            continue
        assert name in exported, f"{where}: {name} is not exported by the code"
        for label in re.findall(r"(\w+)\s*=~?", selector):
            assert label in exported[name], f"{where}: {name} has no label {label!r}"
    for group in re.findall(r"by \(([^)]*)\)", expr):
        labels = {label.strip() for label in group.split(",")} - {"le"}
        metrics = [n for n, _ in found if n not in BUILTIN]
        assert any(labels <= exported[m] for m in metrics), f"{where}: by ({group})"


def test_dashboard_is_grafana_json() -> None:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["uid"] == "headwater" and dashboard["panels"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}"
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"])
