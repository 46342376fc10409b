"""The YAML form of the second aggregation group: parameters, conditions, offsets and tile
lengths load into features, survive the catalog's round trip, and every mistake is named at
its path with an example."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from headwater.schemas.definitions import MAX_BULKY_TILES
from headwater.schemas.errors import DefinitionError
from headwater.schemas.loader import load_definitions
from headwater.schemas.serialize import definitions_from_dict, definitions_to_dict
from tests.unit.schemas.test_loader import BASE, write

FEATURES: list[dict[str, Any]] = [
    {
        "name": "p_1d",
        "function": "approx_percentile",
        "field": "amount",
        "window": "1d",
        "percentiles": [0.5, 0.9, 0.99],
        "accuracy": 0.02,
    },
    {
        "name": "merchants_7d",
        "function": "approx_count_distinct",
        "field": "merchant_id",
        "window": "7d",
        "precision": 14,
    },
    {"name": "top_merchants", "function": "top_k", "field": "merchant_id", "k": 5, "window": "1d"},
    {
        "name": "merchant_mix",
        "function": "histogram",
        "field": "merchant_id",
        "max_keys": 20,
        "window": "1h",
        "resolution": "5m",
    },
    {"name": "first_3", "function": "first_n", "field": "merchant_id", "n": 3, "window": "1h"},
    {"name": "recent_distinct", "function": "last_distinct_n", "field": "merchant_id", "n": 3},
    {"name": "var_1h", "function": "variance", "field": "amount", "window": "1h"},
    {"name": "big_1h", "function": "count_if", "where": "amount > 100", "window": "1h"},
    {
        "name": "big_sum_1h",
        "function": "sum_if",
        "field": "amount",
        "where": "amount > 100",
        "window": "1h",
    },
    {"name": "sum_week_ago", "function": "sum", "field": "amount", "window": "1d", "offset": "7d"},
]


def _doc(features: list[dict[str, Any]]) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    doc["feature_sets"][0]["features"] = features
    doc["feature_services"] = []
    return doc


def test_parameters_load_and_round_trip_through_the_catalog(tmp_path: Path) -> None:
    defs = load_definitions(write(tmp_path, _doc(FEATURES)))
    fs = defs.feature_set("spend")
    p, hll, top, hist, first, recent, var, big, big_sum, week = fs.features
    assert (p.percentiles, p.accuracy, p.window_ms) == ((0.5, 0.9, 0.99), 0.02, 86_400_000)
    assert hll.precision == 14 and top.k == 5 and hist.max_keys == 20
    assert hist.resolution_ms == 300_000 and fs.tile_ms(hist) == 300_000
    assert first.n == 3 and recent.n == 3 and recent.window_ms is None
    assert var.function == "variance"
    assert big.where == "amount > 100" and big.field is None and big_sum.field == "amount"
    assert (week.window_ms, week.offset_ms) == (86_400_000, 7 * 86_400_000)
    # The 7-day distinct count gets 15-minute tiles, the 1-day percentile 5-minute ones.
    assert fs.tile_ms(hll) == 900_000 and 604_800_000 // 900_000 <= MAX_BULKY_TILES
    assert fs.tile_ms(p) == 300_000
    assert definitions_from_dict(definitions_to_dict(defs)) == defs


@pytest.mark.parametrize(
    ("feature", "path", "words"),
    [
        (
            {"function": "approx_percentile", "field": "amount"},
            ".features[0]",
            "approx_percentile needs percentiles, e.g. percentiles: [0.5, 0.9, 0.99]",
        ),
        (
            {"function": "approx_percentile", "field": "amount", "percentiles": [50]},
            ".features[0]",
            "percentiles must be between 0 and 1",
        ),
        (
            {"function": "approx_percentile", "field": "amount", "percentiles": "p99"},
            ".features[0].percentiles",
            "expected a list of quantiles like [0.5, 0.9, 0.99]",
        ),
        ({"function": "top_k", "field": "merchant_id"}, ".features[0]", "top_k needs k, e.g. k: 5"),
        (
            {"function": "sum", "field": "amount", "k": 3},
            ".features[0]",
            "k is only for top_k, not sum",
        ),
        (
            {"function": "count_if", "window": "1h"},
            ".features[0]",
            "count_if needs a condition, e.g. where: \"status == 'declined'\"",
        ),
        (
            {"function": "count_if", "where": "amount * 2"},
            ".features[0].where",
            "where 'amount * 2' is double, not boolean",
        ),
        ({"function": "count_if", "where": "amountt > 1"}, ".features[0].where", "amountt"),
        (
            {"function": "skew", "field": "merchant_id"},
            ".features[0].field",
            "skew needs a numeric field",
        ),
        (
            {"function": "sum", "field": "amount", "offset": "7d"},
            ".features[0]",
            "offset needs a window, e.g. window: 1d, offset: 7d",
        ),
        (
            {"function": "sum", "field": "amount", "window": "1h", "offset": "soon"},
            ".features[0].offset",
            "soon",
        ),
        (
            {"function": "approx_count_distinct", "field": "amount", "precision": 30},
            ".features[0]",
            "precision must be 4 to 18",
        ),
        (
            {"function": "first_n", "field": "amount", "n": "3"},
            ".features[0].n",
            "expected a whole number like n: 5",
        ),
    ],
)
def test_mistakes_are_named_at_their_path(
    tmp_path: Path, feature: dict[str, Any], path: str, words: str
) -> None:
    with pytest.raises(DefinitionError) as caught:
        load_definitions(write(tmp_path, _doc([{"name": "f", **feature}])))
    message = str(caught.value)
    assert f"feature_sets[0]{path}" in message, message
    assert words in message, message


def test_a_window_must_fit_the_features_own_tiles(tmp_path: Path) -> None:
    feature = {
        "name": "f",
        "function": "top_k",
        "field": "merchant_id",
        "k": 2,
        "window": "90m",
        "resolution": "1h",
    }
    with pytest.raises(
        DefinitionError, match=r"window 5400000 ms is not a multiple of the resolution 3600000 ms"
    ):
        load_definitions(write(tmp_path, _doc([feature])))
