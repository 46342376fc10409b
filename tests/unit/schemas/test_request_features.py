"""Request-time features in definitions: the grammar's feature references, ``nullif``, value
types of stored features, type checking with paths and fixes, serialization and plan rules."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from headwater.schemas.definitions import Definitions, Feature, FeatureSet
from headwater.schemas.errors import DefinitionError
from headwater.schemas.expressions import ExpressionError, compile_expression
from headwater.schemas.feature_types import value_type
from headwater.schemas.loader import load_definitions
from headwater.schemas.plan import feature_set_changes
from headwater.schemas.request_features import (
    compile_request_feature,
    evaluation_table,
    request_feature_problems,
)
from headwater.schemas.serialize import definitions_from_dict, definitions_to_dict
from tests.unit.schemas.test_loader import BASE, write

REQUEST_SET: dict[str, Any] = {
    "request_schema": {"amount": "double", "n": "int", "channel": "string"},
    "request_features": {
        "amount_vs_sum": "request.amount / nullif(sum_1h, 0)",
        "pinned": "request.amount - spend@v1:sum_1h",
        "by_name": "spend:cnt_1h + request.n",
        "is_web": "request.channel == 'web'",
    },
}


def _doc(**changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    doc["feature_sets"][0].update(copy.deepcopy(REQUEST_SET))
    doc["feature_sets"][0].update(changes)
    return doc


def _defs(tmp_path: Path, **changes: Any) -> Definitions:
    return load_definitions(write(tmp_path, _doc(**changes)))


def _error(tmp_path: Path, **changes: Any) -> str:
    with pytest.raises(DefinitionError) as info:
        _defs(tmp_path, **changes)
    return str(info.value)


# ---- grammar


@pytest.mark.parametrize(
    ("text", "fields"),
    [
        ("a:b * 2", {"a:b"}),
        ("user_spend@v12:avg_7d + 1", {"user_spend@v12:avg_7d"}),
        ("request.amount / nullif(s:f, 0)", {"request.amount", "s:f"}),
        ("`x:y` + 1", {"x:y"}),
    ],
)
def test_feature_references_are_one_token(text: str, fields: set[str]) -> None:
    types = dict.fromkeys(fields, "double")
    assert compile_expression(text, types).fields == fields


def test_existing_expressions_parse_as_before() -> None:
    types = {"a": "long", "b.c": "string", "if_": "double"}
    for text, kind in [
        ("a + 1", "long"),
        ("b.c == 'x'", "boolean"),
        ("if(a > 1, if_, 0)", "double"),
        ("a % 2 == 0 or a is null", "boolean"),
    ]:
        assert compile_expression(text, types).type == kind


def test_a_feature_reference_in_a_transform_says_only_request_features_read_them() -> None:
    with pytest.raises(ExpressionError, match="only request features read stored features"):
        compile_expression("s:f + 1", {"amount": "double"})


def test_a_lone_colon_is_still_a_syntax_error() -> None:
    with pytest.raises(ExpressionError, match="position"):
        compile_expression("a : b", {"a": "long", "b": "long"})


# ---- nullif


def test_nullif_is_null_when_equal_like_sql() -> None:
    expression = compile_expression("x / nullif(y, 0)", {"x": "long", "y": "long"})
    table = pa.table({"x": [6, 6, None, 6, 1], "y": [3, 0, 2, None, 4]})
    assert expression.evaluate(table).to_pylist() == [2.0, None, None, None, 0.25]
    same = compile_expression("nullif(s, 'n/a')", {"s": "string"})
    assert same.evaluate(pa.table({"s": ["a", "n/a", None]})).to_pylist() == ["a", None, None]


def test_nullif_checks_its_arguments() -> None:
    with pytest.raises(ExpressionError, match="takes 2 arguments"):
        compile_expression("nullif(x)", {"x": "long"})
    with pytest.raises(ExpressionError, match=r"nullif\(\) at position 0 mixes incompatible types"):
        compile_expression("nullif(s, 0)", {"s": "string"})


# ---- value types


@pytest.mark.parametrize(
    ("feature", "expected"),
    [
        (Feature(name="f", function="count"), "long"),
        (Feature(name="f", function="count_distinct", field="m"), "long"),
        (Feature(name="f", function="sum", field="i"), "long"),
        (Feature(name="f", function="sum", field="d"), "double"),
        (Feature(name="f", function="mean", field="i"), "double"),
        (Feature(name="f", function="stddev", field="d"), "double"),
        (Feature(name="f", function="min", field="i"), "long"),
        (Feature(name="f", function="max", field="t"), "long"),
        (Feature(name="f", function="last", field="m"), "string"),
        (Feature(name="f", function="first", field="flag"), "boolean"),
        (Feature(name="f", function="last", field="tags"), None),
        (Feature(name="f", function="last_n", field="d", n=3), None),
        (Feature(name="f", function="count_if", where="i > 0"), "long"),
        (Feature(name="f", function="sum_if", field="i", where="i > 0"), "long"),
        (Feature(name="f", function="approx_count_distinct", field="m"), "long"),
        (Feature(name="f", function="variance", field="i"), "double"),
        (Feature(name="f", function="skew", field="d"), "double"),
        (Feature(name="f", function="kurtosis", field="d"), "double"),
        (Feature(name="f", function="approx_percentile", field="d", percentiles=[0.5]), None),
        (Feature(name="f", function="top_k", field="m", k=2), None),
        (Feature(name="f", function="first_n", field="m", n=2), None),
    ],
)
def test_value_types_of_stored_features(feature: Feature, expected: str | None) -> None:
    types = {
        "i": "int",
        "d": "float",
        "m": "string",
        "t": "timestamp",
        "flag": "boolean",
        "tags": "array",
    }
    assert value_type(feature, types) == expected


def test_an_unknown_function_has_no_value_type() -> None:
    feature = Feature(name="f", function="count")
    object.__setattr__(feature, "function", "brand_new")  # one added after this module
    assert value_type(feature, {}) is None


# ---- definitions, loading and type checking


def test_request_features_load_and_compile(tmp_path: Path) -> None:
    defs = _defs(tmp_path)
    fs = defs.feature_set("spend")
    assert dict(fs.request_schema) == REQUEST_SET["request_schema"]
    assert dict(fs.request_features) == REQUEST_SET["request_features"]
    ratio = compile_request_feature(defs, fs, "amount_vs_sum")
    assert ratio.expression.type == "double"
    assert ratio.request_fields == ("amount",)
    assert [(d.column, d.feature_set.name, d.feature, d.type) for d in ratio.dependencies] == [
        ("sum_1h", "spend", "sum_1h", "double")
    ]
    assert compile_request_feature(defs, fs, "by_name").expression.type == "long"
    assert compile_request_feature(defs, fs, "is_web").dependencies == ()
    assert request_feature_problems(defs) == []


@pytest.mark.parametrize(
    ("request_features", "fragments"),
    [
        (
            {"r": "request.amout * 2"},
            ["unknown request field 'request.amout'", "amout: double", "did you mean 'amount'"],
        ),
        ({"r": "request.amount / nosuch"}, ["unknown feature 'nosuch'", "feature set 'spend'"]),
        ({"r": "amount * 2"}, ["unknown feature 'amount'"]),
        ({"r": "other:x + 1"}, ["unknown feature set 'other'"]),
        ({"r": "last_merchant + 1"}, ["cannot combine string and long"]),
        ({"r": "request.channel * 2"}, ["cannot combine string and long"]),
        ({"r": "spend:r2", "r2": "request.n"}, ["request features cannot read one another"]),
        ({"r": "foo.bar"}, ["neither a request field nor a feature"]),
        ({"r": "request + 1"}, ["a bare 'request' reads no field", "request.<field>"]),
        ({"r": "request.amount +"}, ["expression ends after '+'"]),
    ],
)
def test_type_errors_name_the_path_the_feature_and_the_fix(
    tmp_path: Path, request_features: dict[str, str], fragments: list[str]
) -> None:
    message = _error(tmp_path, request_features=request_features)
    assert "feature_sets[0].request_features.r" in message
    assert "request feature 'r'" in message
    for fragment in fragments:
        assert fragment in message


def test_a_list_valued_feature_is_refused_by_name(tmp_path: Path) -> None:
    doc = _doc(request_features={"r": "last5 + 1"})
    doc["feature_sets"][0]["features"].append(
        {"name": "last5", "function": "last_n", "field": "amount", "n": 5}
    )
    with pytest.raises(DefinitionError) as info:
        load_definitions(write(tmp_path, doc))
    assert "'last5' (last_n) has no value an expression can use" in str(info.value)


@pytest.mark.parametrize(
    ("changes", "path", "fragment"),
    [
        ({"request_schema": {"amount": "decimal"}}, "request_schema.amount", "expected one of"),
        ({"request_schema": ["amount"]}, "request_schema", "expected a mapping"),
        ({"request_features": {"r": 5}}, "request_features", "expected a mapping"),
        ({"request_features": {"sum_1h": "1"}}, "request_features.sum_1h", "stored feature"),
    ],
)
def test_bad_request_keys_are_reported_at_their_path(
    tmp_path: Path, changes: dict[str, Any], path: str, fragment: str
) -> None:
    message = _error(tmp_path, **changes)
    assert f"feature_sets[0].{path}" in message and fragment in message


def test_a_feature_service_may_name_a_request_feature(tmp_path: Path) -> None:
    doc = _doc()
    doc["feature_services"][0]["features"].append("spend:amount_vs_sum")
    defs = load_definitions(write(tmp_path, doc))
    assert "spend:amount_vs_sum" in defs.feature_service("model").features


def test_python_definitions_check_names_and_types() -> None:
    feature = Feature(name="c", function="count")
    with pytest.raises(ValueError, match="expected one of boolean, int"):
        FeatureSet(name="s", entity="e", source="x", features=(feature,), request_schema={"a": "x"})
    with pytest.raises(ValueError, match="name of a stored feature"):
        FeatureSet(
            name="s", entity="e", source="x", features=(feature,), request_features={"c": "1"}
        )
    fs = FeatureSet(
        name="s", entity="e", source="x", features=(feature,), request_features={"r": "c * 2"}
    )
    with pytest.raises(TypeError):
        fs.request_features["r"] = "1"  # type: ignore[index]  # frozen mapping is the point
    assert fs.has_feature("r") and fs.has_feature("c") and not fs.has_feature("x")


def test_serialization_round_trips(tmp_path: Path) -> None:
    defs = _defs(tmp_path)
    again = definitions_from_dict(definitions_to_dict(defs))
    assert again.feature_set("spend") == defs.feature_set("spend")
    assert dict(again.feature_set("spend").request_features) == REQUEST_SET["request_features"]
    plain = definitions_to_dict(load_definitions(write(tmp_path / "b", copy.deepcopy(BASE))))
    assert "request_schema" not in plain["feature_sets"][0]  # older catalogs read the same


def test_plan_rules_follow_stored_features(tmp_path: Path) -> None:
    fs = _defs(tmp_path).feature_set("spend")

    def keys(_: FeatureSet) -> frozenset[str]:
        return frozenset()

    added = replace(fs, request_features={**fs.request_features, "new": "request.n * 2"})
    assert feature_set_changes(fs, added, keys) == ([], ["new request feature(s) ['new']"])
    changed = replace(fs, request_features={**fs.request_features, "is_web": "true"})
    breaking, _ = feature_set_changes(fs, changed, keys)
    assert breaking == ["request feature 'is_web': \"request.channel == 'web'\" -> 'true'"]
    removed = replace(fs, request_schema={"amount": "double", "n": "int"})
    assert feature_set_changes(fs, removed, keys)[0] == ["request field 'channel' removed"]
    widened = replace(fs, request_schema={**fs.request_schema, "extra": "long"})
    assert feature_set_changes(fs, widened, keys) == ([], ["new request field(s) ['extra']"])


def test_the_evaluation_table_reads_request_fields_and_dependencies(tmp_path: Path) -> None:
    defs = _defs(tmp_path)
    ratio = compile_request_feature(defs, defs.feature_set("spend"), "amount_vs_sum")
    table = evaluation_table(
        4,
        {"amount": pa.array([10.0, 5.0, None, 1.0])},
        {"sum_1h": pa.array([4.0, 0.0, 2.0, None])},
    )
    assert ratio.expression.evaluate(table).to_pylist() == [2.5, None, None, None]
    constant = compile_expression("1 + 1", {})
    assert constant.evaluate(evaluation_table(3, {}, {})).to_pylist() == [2, 2, 2]


def test_a_pinned_version_is_checked_once_merged_with_the_catalog(tmp_path: Path) -> None:
    # Files hold one version of each set, so loading types @v3 against it; apply then checks
    # the merged definitions, where v3 must exist.
    doc = _doc(request_features={"r": "request.amount - other@v3:total"})
    doc["feature_sets"].append(
        {
            "name": "other",
            "entity": "user",
            "source": "txns",
            "features": [{"name": "total", "function": "sum", "field": "amount"}],
        }
    )
    defs = load_definitions(write(tmp_path, doc))
    ((fs, name, message),) = request_feature_problems(defs)
    assert (fs.name, name) == ("spend", "r")
    assert "feature set 'other' has no active version 3" in message
    merged = replace(
        defs, feature_sets=(*defs.feature_sets, replace(defs.feature_set("other"), version=3))
    )
    assert request_feature_problems(merged) == []
