"""How apply classifies changes: create, update in place, new version, unchanged."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from headwater.schemas.definitions import Definitions, Feature, FeatureSet
from headwater.schemas.loader import load_definitions
from headwater.schemas.plan import Plan, PlanItem, make_plan
from headwater.schemas.tiles import FeatureSetPlan

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
DEFS = load_definitions(EXAMPLES)
SET = DEFS.feature_set("user_spend")


def _keys(fs: FeatureSet) -> frozenset[str]:
    return FeatureSetPlan(fs, DEFS.source(fs.source)).aggregator.partial_keys


def _plan(
    new_set: FeatureSet, current: Definitions | None = DEFS, versions: dict[str, int] | None = None
) -> Plan:
    new = replace(DEFS, feature_sets=(replace(new_set, version=1),))
    return make_plan(new, current, all_versions=versions or {"user_spend": 1}, partial_keys=_keys)


def _set_item(plan: Plan) -> PlanItem:
    (item,) = [i for i in plan.items if i.kind == "feature_set"]
    return item


def test_everything_is_created_in_an_empty_catalog() -> None:
    plan = make_plan(DEFS, None, all_versions={}, partial_keys=_keys)
    assert {(i.kind, i.action) for i in plan.items} == {
        ("entity", "create"),
        ("source", "create"),
        ("feature_set", "create"),
        ("feature_service", "create"),
    }
    assert [fs.qualified_name for fs in plan.new_versions] == ["user_spend@v1"]


def test_same_definitions_are_unchanged() -> None:
    plan = _plan(SET)
    assert not plan.changed
    assert plan.to_save == ()


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"description": "new words"}, "description:"),
        ({"owner": "ml-team"}, "owner:"),
        ({"tags": ("fraud",)}, "tags:"),
        ({"labels": {"tier": "silver"}}, "labels:"),
        ({"ttl_ms": 86_400_000}, "ttl_ms:"),
        ({"relations": {"merchant": "merchant_id"}}, "relations:"),
    ],
)
def test_metadata_changes_update_in_place(change: dict[str, Any], fragment: str) -> None:
    item = _set_item(_plan(replace(SET, **change)))
    assert (item.action, item.version) == ("update", 1)
    assert any(c.startswith(fragment) for c in item.changes)


def test_new_feature_over_kept_state_updates_in_place() -> None:
    added = replace(
        SET,
        features=(
            *SET.features,
            Feature(name="txn_count_2h", function="count", window_ms=7_200_000),
        ),
    )
    item = _set_item(_plan(added))
    assert (item.action, item.version) == ("update", 1)
    assert item.changes == ("new feature(s) ['txn_count_2h']",)


def test_new_feature_needing_new_state_is_a_new_version() -> None:
    added = replace(
        SET, features=(*SET.features, Feature(name="min_amount", function="min", field="amount"))
    )
    item = _set_item(_plan(added))
    assert (item.action, item.version) == ("new_version", 2)
    assert "need state v1 does not keep: ['min:amount']" in item.changes[0]


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"resolution_ms": 300_000}, "resolution_ms: 60000 -> 300000"),
        ({"filter": "amount > 1"}, "filter:"),
        ({"transforms": {}}, "transforms:"),
        ({"entity": "merchant"}, "entity: 'user' -> 'merchant'"),
    ],
)
def test_breaking_set_changes_make_a_new_version(change: dict[str, Any], fragment: str) -> None:
    item = _set_item(_plan(replace(SET, **change)))
    assert (item.action, item.version) == ("new_version", 2)
    assert any(c.startswith(fragment) for c in item.changes), item.changes


def test_changed_or_removed_feature_makes_a_new_version_and_keeps_the_old_one() -> None:
    changed = tuple(
        replace(f, window_ms=7_200_000) if f.name == "spend_1h" else f for f in SET.features[:-1]
    )
    plan = _plan(replace(SET, features=changed))
    item = _set_item(plan)
    assert item.action == "new_version"
    assert any("feature 'spend_1h'" in c for c in item.changes)
    assert any("removed" in c for c in item.changes)
    assert sorted(fs.version for fs in plan.definitions.feature_sets) == [1, 2]


def test_version_numbers_are_never_reused() -> None:
    # v2 and v3 existed and were retired; the next breaking change is v4.
    item = _set_item(_plan(replace(SET, resolution_ms=300_000), versions={"user_spend": 3}))
    assert item.version == 4
