"""Request-time features at lookup time: resolution with hidden dependencies, typed request
fields, vectorised evaluation, statuses and grants (Redis is replaced by tile states built
with the same plan the workers use)."""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from headwater.connectors.base import EntityKey
from headwater.connectors.catalog.keys import Grants
from headwater.schemas.definitions import Definitions, FeatureSet
from headwater.schemas.loader import load_definitions
from headwater.schemas.tiles import EntityState, FeatureSetPlan, Status, arrival_seq
from headwater.serving.auth import _refused_features
from headwater.serving.catalog_views import search_features
from headwater.serving.errors import BadRequestError, NotFoundError
from headwater.serving.features import resolve_features
from headwater.serving.historical import column_names
from headwater.serving.online import lookup
from headwater.serving.request_values import (
    evaluate_request_column,
    request_table_columns,
    worst_status,
)
from tests.unit.schemas.test_loader import BASE, write


@pytest.fixture
def defs(tmp_path: Path) -> Definitions:
    doc = copy.deepcopy(BASE)
    doc["feature_sets"][0].update(
        {
            "request_schema": {"amount": "double", "n": "long"},
            "request_features": {
                "amount_vs_sum": "request.amount / nullif(sum_1h, 0)",
                "plus_n": "cnt_1h + request.n",
                "twice": "request.amount * 2",
            },
        }
    )
    doc["feature_sets"][0]["features"].append(
        {"name": "secret", "function": "last", "field": "amount", "tags": ["pii"]}
    )
    doc["feature_sets"][0]["request_features"]["leaks"] = "secret * 1"
    return load_definitions(write(tmp_path, doc))


class Store:
    """``read_many`` over states built with the workers' plan: u1 has two events."""

    def __init__(self, defs: Definitions) -> None:
        fs = defs.feature_set("spend")
        plan = FeatureSetPlan(fs, defs.source(fs.source))
        now = time.time_ns() // 1_000_000
        self.state = EntityState()
        events = [
            ({"amount": 4.0, "merchant_id": "m"}, now - 1_000, arrival_seq(0, 1)),
            ({"amount": 6.0, "merchant_id": "m"}, now - 500, arrival_seq(0, 2)),
        ]
        plan.apply(self.state, events, now)

    def read_many(
        self, requests: Sequence[tuple[FeatureSet, Sequence[EntityKey]]]
    ) -> list[list[EntityState | None]]:
        return [[self.state if key == ("u1",) else None for key in keys] for _, keys in requests]


def test_a_request_feature_reads_hidden_dependencies(defs: Definitions) -> None:
    resolved = resolve_features(defs, ["spend:amount_vs_sum", "spend:cnt_1h"])
    assert resolved.outputs == (("request", 0), ("stored", 0))
    fs = defs.feature_set("spend")
    assert resolved.columns == ((0, 0), (0, [f.name for f in fs.features].index("sum_1h")))
    assert resolved.pinned_refs == ("spend@v1:amount_vs_sum", "spend@v1:cnt_1h")
    assert column_names(resolved) == ["amount_vs_sum", "cnt_1h"]
    assert resolved.request_fields == {"amount": "double"}


def test_values_are_computed_per_row_with_nulls_and_division_by_zero(defs: Definitions) -> None:
    resolved = resolve_features(
        defs, ["spend:amount_vs_sum", "spend:plus_n", "spend:twice", "spend:sum_1h"]
    )
    result = lookup(
        Store(defs),  # type: ignore[arg-type]  # read_many is all lookup calls
        resolved,
        {"user_id": ["u1", "u2", "u1"]},
        {"amount": [20.0, 3, None], "n": [1, 2, 3]},
    )
    assert result.values == [
        [2.0, 3, 40.0, 10.0],
        [None, 2, 6.0, 0.0],  # u2 has no events: sum 0, so the ratio divides by null
        [None, 5, None, 10.0],
    ]
    present, missing = Status.PRESENT, Status.NOT_FOUND
    assert result.statuses == [
        [present, present, present, present],
        [missing, missing, present, missing],
        [present, present, present, present],
    ]


def test_request_only_features_need_no_entity(defs: Definitions) -> None:
    resolved = resolve_features(defs, ["spend:twice"])
    result = lookup(Store(defs), resolved, {}, {"amount": [1.5, 2.0]})  # type: ignore[arg-type]
    assert result.values == [[3.0], [4.0]]
    assert result.statuses == [[Status.PRESENT], [Status.PRESENT]]


@pytest.mark.parametrize(
    ("request_body", "field", "fragment"),
    [
        (None, "request.amount", "missing field(s) request.amount read by spend@v1:amount_vs_sum"),
        (
            {"n": [1]},
            "request.amount",
            "missing field(s) request.amount read by spend@v1:amount_vs_sum",
        ),
        ({"amount": [1.0, 2.0]}, "request.amount", "expected a list of 1 value(s)"),
        ({"amount": 1.0}, "request.amount", "expected a list of 1 value(s)"),
        ({"amount": ["12"]}, "request.amount[0]", "'12' is not a double"),
        ({"amount": [True]}, "request.amount[0]", "True is not a double"),
    ],
)
def test_bad_request_fields_are_422_naming_the_field(
    defs: Definitions, request_body: dict[str, Any] | None, field: str, fragment: str
) -> None:
    resolved = resolve_features(defs, ["spend:amount_vs_sum"])
    with pytest.raises(BadRequestError) as info:
        lookup(Store(defs), resolved, {"user_id": ["u1"]}, request_body)  # type: ignore[arg-type]
    assert info.value.http_status == 422
    assert fragment in str(info.value)
    assert [e.field for e in info.value.errors] == [field]


def test_an_unknown_request_feature_is_404_listing_the_request_features(
    defs: Definitions,
) -> None:
    with pytest.raises(NotFoundError) as info:
        resolve_features(defs, ["spend:nosuch"])
    assert "request features: ['amount_vs_sum'" in str(info.value)


def test_a_request_feature_needs_the_grants_of_what_it_reads(defs: Definitions) -> None:
    leaks = resolve_features(defs, ["spend:twice", "spend:leaks"])
    refused = list(_refused_features(leaks, Grants()))
    assert [(ref, item.field) for ref, item in refused] == [("spend:leaks", "features[1]")]
    assert "reads spend:secret, which is tagged pii" in refused[0][1].reason
    assert list(_refused_features(leaks, Grants(pii=("spend",)))) == []
    other = list(_refused_features(leaks, Grants(feature_sets=("other",))))
    assert [ref for ref, _ in other] == ["spend:twice", "spend:leaks"]


def test_label_columns_are_typed_and_a_missing_one_names_the_fix(defs: Definitions) -> None:
    resolved = resolve_features(defs, ["spend:plus_n", "spend:amount_vs_sum"])
    table = pa.table({"amount": pa.array([1, 2], pa.int32()), "n": [1, None]})
    typed = request_table_columns(resolved, table)
    assert typed["amount"].type == pa.float64() and typed["n"].to_pylist() == [1, None]
    with pytest.raises(BadRequestError, match="no column 'n', the request field request.n"):
        request_table_columns(resolved, table.drop_columns(["n"]))
    with pytest.raises(BadRequestError, match="does not convert to long"):
        request_table_columns(resolved, table.set_column(1, "n", pa.array(["x", "y"])))


def test_the_worst_status_wins() -> None:
    assert worst_status([]) is Status.PRESENT
    assert worst_status([Status.PRESENT, Status.EXPIRED]) is Status.EXPIRED
    assert worst_status([Status.EXPIRED, Status.NOT_FOUND]) is Status.NOT_FOUND


def test_a_request_feature_may_read_another_entitys_set(tmp_path: Path) -> None:
    doc = copy.deepcopy(BASE)
    doc["entities"].append({"name": "merchant", "keys": ["merchant_id"]})
    doc["sources"].append({"name": "shop_txns", "schema": "txns.avsc", "timestamp": "event_time"})
    doc["feature_sets"].append(
        {
            "name": "shop",
            "entity": "merchant",
            "source": "shop_txns",
            "features": [{"name": "shop_cnt", "function": "count", "window": "1h"}],
        }
    )
    doc["feature_sets"][0]["request_features"] = {"share": "cnt_1h / nullif(shop:shop_cnt, 0)"}
    defs = load_definitions(write(tmp_path, doc))
    resolved = resolve_features(defs, ["spend:share"])
    assert [p.feature_set.name for p in resolved.plans] == ["spend", "shop"]
    assert resolved.entity_keys == (("user_id",), ("merchant_id",))
    with pytest.raises(BadRequestError) as info:
        lookup(Store(defs), resolved, {"user_id": ["u1"]})  # type: ignore[arg-type]
    assert [e.field for e in info.value.errors] == ["entities.merchant_id"]
    result = lookup(Store(defs), resolved, {"user_id": ["u1"], "merchant_id": ["m"]})  # type: ignore[arg-type]
    assert result.values == [[None]]  # the shop has no state here: 0 shop events
    assert result.statuses == [[Status.NOT_FOUND]]
    hits = search_features(defs, "share")
    assert [(h["reference"], h["function"]) for h in hits] == [("spend@v1:share", "request")]


def test_an_integer_sum_beyond_64_bits_reads_as_null(defs: Definitions) -> None:
    resolved = resolve_features(defs, ["spend:plus_n"])
    (column,) = resolved.request_columns
    values = evaluate_request_column(column, 2, {"n": pa.array([1, 1])}, [[2**70, 4]])
    assert values.to_pylist() == [None, 5]


def test_a_long_beyond_64_bits_is_refused(defs: Definitions) -> None:
    resolved = resolve_features(defs, ["spend:plus_n"])
    with pytest.raises(BadRequestError) as info:
        lookup(Store(defs), resolved, {"user_id": ["u1"]}, {"n": [2**63]})  # type: ignore[arg-type]
    assert [e.field for e in info.value.errors] == ["request.n[0]"]
    assert "is not a long" in str(info.value)
