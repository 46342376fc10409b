"""``monitoring:`` in definitions: loaded with its values, refused with the path and an
example when wrong, kept by the catalog's stored form, and a change of it is metadata (an
update in place, never a new version)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from headwater.schemas.loader import load_definitions
from headwater.schemas.monitoring import DEFAULT_PSI, Monitoring
from headwater.schemas.serialize import definitions_from_dict, definitions_to_dict
from tests.unit.schemas.test_loader import base, error_of, fs0, write
from tests.unit.schemas.test_plan import SET, _plan, _set_item


def test_limits_load_round_trip_and_resolve_per_feature(tmp_path: Path) -> None:
    doc = base()
    fs0(doc)["monitoring"] = {
        "freshness": "90m",
        "max_lag": 5000,
        "max_dead_letter_rate": 0.01,
        "max_mismatch_rate": 0.001,
        "drift": {"psi": 0.25, "js": 0.1},
    }
    fs0(doc)["features"][1]["monitoring"] = {"drift": {"psi": 0.4}}
    defs = load_definitions(write(tmp_path, doc))
    fs = defs.feature_set("spend")
    assert fs.monitoring == Monitoring(
        freshness_ms=90 * 60_000,
        max_lag=5000,
        max_dead_letter_rate=0.01,
        max_mismatch_rate=0.001,
        drift_psi=0.25,
        drift_js=0.1,
    )
    own = fs.feature("sum_1h").monitoring
    assert own == Monitoring(drift_psi=0.4)
    assert fs.monitoring.drift_limits(own) == (0.4, 0.1)
    assert fs.monitoring.drift_limits(fs.feature("cnt_1h").monitoring) == (0.25, 0.1)
    assert Monitoring().drift_limits() == (DEFAULT_PSI, None)
    assert definitions_from_dict(definitions_to_dict(defs)) == defs


def test_wrong_limits_name_the_path_and_the_fix(tmp_path: Path) -> None:
    doc = base()
    fs0(doc)["monitoring"] = {
        "freshness": "soon",
        "max_lag": -1,
        "drift": {"psi": 0.2, "kl": 1},
        "colour": "red",
    }
    fs0(doc)["features"][0]["monitoring"] = {"freshness": "1h", "drift": {"js": 3}}
    message = error_of(write(tmp_path, doc))
    assert "feature_sets[0].monitoring.freshness" in message
    assert "feature_sets[0].monitoring.max_lag: expected a positive number, e.g. 100000" in message
    assert "feature_sets[0].monitoring.drift.kl: unknown drift measure" in message
    assert "feature_sets[0].monitoring.colour: unknown key" in message
    assert "feature_sets[0].features[0].monitoring.freshness: unknown key" in message
    assert "features[0].monitoring.drift.js: expected a share between 0 and 1" in message


def test_a_monitoring_change_is_an_update_in_place() -> None:
    changed = replace(SET, monitoring=Monitoring(freshness_ms=60_000, drift_psi=0.3))
    item = _set_item(_plan(changed))
    assert item.action == "update"
    first = SET.features[0]
    features = (replace(first, monitoring=Monitoring(drift_psi=0.5)), *SET.features[1:])
    item = _set_item(_plan(replace(SET, features=features)))
    assert item.action == "update"
    assert any("monitoring" in change for change in item.changes)
