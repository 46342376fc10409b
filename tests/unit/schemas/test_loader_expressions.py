"""Filters, transforms and relations in definitions: typed at load time, errors with paths."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from headwater.schemas.errors import DefinitionError
from headwater.schemas.loader import load_definitions
from tests.unit.schemas.test_loader import BASE, write


def _with(**changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    doc["feature_sets"][0].update(changes)
    return doc


def test_filter_transforms_and_relations_load(tmp_path: Path) -> None:
    doc = _with(
        filter="amount > 0 and merchant_id != 'test'",
        transforms={"cents": "to_long(round(amount * 100))", "big": "if(cents >= 10000, 1, 0)"},
        relations={"merchant": "merchant_id"},
    )
    doc["entities"].append({"name": "merchant", "keys": ["merchant_id"]})
    doc["feature_sets"][0]["features"].append(
        {"name": "big_1h", "function": "sum", "field": "big", "window": "1h"}
    )
    fs = load_definitions(write(tmp_path, doc)).feature_set("spend")
    assert fs.filter == "amount > 0 and merchant_id != 'test'"
    assert dict(fs.transforms) == {
        "cents": "to_long(round(amount * 100))",
        "big": "if(cents >= 10000, 1, 0)",
    }
    assert dict(fs.relations) == {"merchant": "merchant_id"}
    assert fs.feature("big_1h").field == "big"


@pytest.mark.parametrize(
    ("changes", "path", "fragments"),
    [
        ({"filter": "amout > 0"}, "feature_sets[0].filter", ["'amout'", "amount"]),
        ({"filter": "amount * 2"}, "feature_sets[0].filter", ["double", "not boolean"]),
        ({"filter": "amount > "}, "feature_sets[0].filter", ["position"]),
        ({"filter": 5}, "feature_sets[0].filter", ["expected an expression string"]),
        (
            {"transforms": {"x": "merchant_id + 1"}},
            "feature_sets[0].transforms.x",
            ["string", "long"],
        ),
        ({"transforms": {"x": "nosuch(amount)"}}, "feature_sets[0].transforms.x", ["'nosuch'"]),
        ({"transforms": ["amount"]}, "feature_sets[0].transforms", ["expected a mapping"]),
        ({"transforms": {"x": "__import__('os')"}}, "feature_sets[0].transforms.x", ["__import__"]),
        (
            {"relations": {"shop": "merchant_id"}},
            "feature_sets[0].relations.shop",
            ["unknown entity 'shop'"],
        ),
        ({"relations": {"user": "shop_id"}}, "feature_sets[0].relations.user", ["'shop_id'"]),
    ],
)
def test_expression_errors_name_file_path_and_problem(
    tmp_path: Path, changes: dict[str, Any], path: str, fragments: list[str]
) -> None:
    file = write(tmp_path, _with(**changes))
    with pytest.raises(DefinitionError) as info:
        load_definitions(file)
    message = str(info.value)
    assert str(file) in message
    assert path in message, message
    for fragment in fragments:
        assert fragment in message, message


def test_feature_on_an_unknown_transform_output_lists_transformed_fields(tmp_path: Path) -> None:
    doc = _with(transforms={"cents": "to_long(amount * 100)"})
    doc["feature_sets"][0]["features"].append(
        {"name": "c", "function": "sum", "field": "cent", "window": "1h"}
    )
    with pytest.raises(DefinitionError) as info:
        load_definitions(write(tmp_path, doc))
    assert "'cent'" in str(info.value) and "'cents'" in str(info.value)


def test_sum_of_a_string_transform_is_refused(tmp_path: Path) -> None:
    doc = _with(transforms={"label": "concat(merchant_id, '-x')"})
    doc["feature_sets"][0]["features"].append(
        {"name": "s", "function": "sum", "field": "label", "window": "1h"}
    )
    with pytest.raises(DefinitionError, match="sum needs a numeric field"):
        load_definitions(write(tmp_path, doc))
