"""The YAML definitions loader (DESIGN §5): values loaded, and every error's message.

Each error must name the file, the path inside it, what was found and a hint; all problems of
one file are reported in one DefinitionError.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

from headwater.schemas.errors import DefinitionError
from headwater.schemas.loader import load_definitions

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"

AVSC: dict[str, Any] = {
    "type": "record",
    "name": "Txn",
    "fields": [
        {"name": "user_id", "type": "string"},
        {"name": "merchant_id", "type": "string"},
        {"name": "amount", "type": "double"},
        {"name": "event_time", "type": "long"},
    ],
}

BASE: dict[str, Any] = {
    "entities": [{"name": "user", "keys": ["user_id"]}],
    "sources": [{"name": "txns", "schema": "txns.avsc", "timestamp": "event_time"}],
    "feature_sets": [
        {
            "name": "spend",
            "entity": "user",
            "source": "txns",
            "features": [
                {"name": "cnt_1h", "function": "count", "window": "1h"},
                {"name": "sum_1h", "function": "sum", "field": "amount", "window": "1h"},
                {"name": "last_merchant", "function": "last", "field": "merchant_id"},
            ],
        }
    ],
    "feature_services": [{"name": "model", "features": ["spend:sum_1h", "spend:cnt_1h"]}],
}


def write(directory: Path, doc: dict[str, Any], name: str = "defs.yaml") -> Path:
    """Write ``doc`` as YAML, and the schema it refers to, into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "txns.avsc").write_text(json.dumps(AVSC), encoding="utf-8")
    path = directory / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def error_of(path: Path) -> str:
    with pytest.raises(DefinitionError) as info:
        load_definitions(path)
    return str(info.value)


def base() -> dict[str, Any]:
    return copy.deepcopy(BASE)


def fs0(doc: dict[str, Any]) -> dict[str, Any]:
    return cast(dict[str, Any], doc["feature_sets"][0])


# ---------------------------------------------------------------------------- loading values


def test_example_definitions_load_with_expected_values() -> None:
    defs = load_definitions(EXAMPLES / "features.yaml")

    assert [(e.name, e.keys) for e in defs.entities] == [("user", ("user_id",))]
    (source,) = defs.sources
    assert (source.name, source.topic, source.timestamp) == (
        "transactions",
        "raw.transactions",
        "event_time",
    )
    assert source.dlq_topic == "dlq.transactions"
    assert source.schema.name == "Transaction"
    assert source.schema.field_types["amount"] == "double"

    fs = defs.feature_set("user_spend")
    assert (fs.entity, fs.source, fs.version) == ("user", "transactions", 1)
    assert fs.resolution_ms == 60_000
    assert fs.ttl_ms == 7 * 86_400_000
    assert (fs.owner, fs.description) == ("risk-team", "Card spend per user")
    assert fs.tags == ("fraud", "payments")
    assert dict(fs.labels) == {"tier": "gold"}
    assert [(f.name, f.function, f.field, f.window_ms) for f in fs.features] == [
        ("txn_count_1h", "count", None, 3_600_000),
        ("spend_1h", "sum", "amount", 3_600_000),
        ("txn_count_1d", "count", None, 86_400_000),
        ("spend_1d", "sum", "amount", 86_400_000),
        ("max_amount_1d", "max", "amount", 86_400_000),
        ("avg_amount_7d", "mean", "amount", 7 * 86_400_000),
        ("spend_cents_7d", "sum", "amount_cents", 7 * 86_400_000),
        ("large_txn_count_1d", "sum", "is_large", 86_400_000),
        ("txn_count_total", "count", None, None),
        ("last_merchant", "last", "merchant_id", None),
    ]
    assert fs.filter == "status == 'approved'"
    assert dict(fs.transforms) == {
        "amount_cents": "to_long(round(amount * 100))",
        "is_large": "if(amount >= 100, 1, 0)",
    }
    assert fs.max_window_ms == 7 * 86_400_000
    svc = defs.feature_service("fraud_model")
    assert svc.features == (
        "user_spend:spend_1h",
        "user_spend:txn_count_1d",
        "user_spend:avg_amount_7d",
        "user_spend:last_merchant",
    )


def test_defaults_topic_resolution_and_no_ttl(tmp_path: Path) -> None:
    defs = load_definitions(write(tmp_path, base()))
    assert defs.source("txns").topic == "raw.txns"
    fs = defs.feature_set("spend")
    assert (fs.resolution_ms, fs.ttl_ms, fs.tags, dict(fs.labels)) == (60_000, None, (), {})


def test_aggregations_shorthand_expands_to_named_features(tmp_path: Path) -> None:
    doc = base()
    fs0(doc)["resolution"] = "5m"
    fs0(doc)["aggregations"] = [
        {"field": "amount", "functions": ["sum", "mean"], "windows": ["1h", "1d"]},
        {"field": "amount", "functions": ["max"]},
    ]
    fs = load_definitions(write(tmp_path, doc)).feature_set("spend")
    expanded = {f.name: (f.function, f.field, f.window_ms) for f in fs.features[3:]}
    assert expanded == {
        "amount_sum_1h": ("sum", "amount", 3_600_000),
        "amount_sum_1d": ("sum", "amount", 86_400_000),
        "amount_mean_1h": ("mean", "amount", 3_600_000),
        "amount_mean_1d": ("mean", "amount", 86_400_000),
        "amount_max_lifetime": ("max", "amount", None),
    }
    assert fs.resolution_ms == 300_000


def test_directory_of_yaml_files_loads_all_and_resolves_across_files(tmp_path: Path) -> None:
    doc = base()
    write(tmp_path, {"entities": doc["entities"]}, "entities.yaml")
    write(tmp_path, {"sources": doc["sources"]}, "sources.yml")
    write(tmp_path / "sets", {"feature_sets": doc["feature_sets"]}, "spend.yaml")
    write(tmp_path, {"feature_services": doc["feature_services"]}, "services.yaml")
    (tmp_path / "notes.txt").write_text("not a definition", encoding="utf-8")

    defs = load_definitions(tmp_path)
    assert [e.name for e in defs.entities] == ["user"]
    assert [s.name for s in defs.sources] == ["txns"]
    assert [f.name for f in defs.feature_set("spend").features] == [
        "cnt_1h",
        "sum_1h",
        "last_merchant",
    ]
    assert defs.feature_service("model").features == ("spend:sum_1h", "spend:cnt_1h")


def test_error_in_a_directory_names_the_file_it_is_in(tmp_path: Path) -> None:
    doc = base()
    fs0(doc)["entity"] = "customer"
    write(tmp_path, {"entities": doc["entities"], "sources": doc["sources"]}, "a.yaml")
    write(tmp_path, {"feature_sets": doc["feature_sets"]}, "b.yaml")
    message = error_of(tmp_path)
    assert re.search(r"b\.yaml: feature_sets\[0\]\.entity: .*'customer'", message), message
    assert "a.yaml" not in message


def test_missing_path_is_refused(tmp_path: Path) -> None:
    message = error_of(tmp_path / "nowhere.yaml")
    assert "nowhere.yaml" in message and "no such file" in message


# ---------------------------------------------------------------------------- one error each


def _assign(doc: dict[str, Any], path: str, value: Any) -> None:
    """Set ``doc`` at ``path`` written like ``feature_sets[0].features[1].window``."""
    keys: list[Any] = [int(k) if k.isdigit() else k for k in re.findall(r"\w+", path)]
    target: Any = doc
    for key in keys[:-1]:
        target = target[key]
    target[keys[-1]] = value


F = "feature_sets[0].features"
S = "feature_services[0].features"
# (id, path to set, value, path the error must name (None: the same), message fragments)
CASES = [
    ("unknown top-level key", "colour", "blue", None, ["unknown", "feature_sets"]),
    ("unknown feature-set key", "feature_sets[0].windw", "1h", None, ["unknown", "resolution"]),
    ("unknown feature key", f"{F}[2].colour", "red", None, ["unknown", "window"]),
    ("bad duration unit", f"{F}[0].window", "90x", None, ["'90x'", "'1h'"]),
    ("bare number window", f"{F}[0].window", 5, None, ["bare number 5", "'5m'"]),
    ("bad ttl", "feature_sets[0].ttl", "a week", None, ["'a week'", "'7d'"]),
    ("not a multiple", f"{F}[1].window", "90s", None, ["90s", "resolution 1m", "multiple"]),
    ("unknown field", f"{F}[1].field", "amout", None, ["'amout'", "'amount'", "'txns'"]),
    ("sum of a string", f"{F}[1].field", "merchant_id", None, ["sum", "numeric", "'merchant_id'", "string"]),
    ("unknown function", f"{F}[0].function", "median", None, ["'median'", "'count'", "'mean'?"]),
    ("duplicate feature", f"{F}[2].name", "cnt_1h", None, ["'cnt_1h'", f"{F}[0]", "rename"]),
    ("unknown entity", "feature_sets[0].entity", "usr", None, ["'usr'", "['user']"]),
    ("unknown source", "feature_sets[0].source", "payments", None, ["'payments'", "['txns']"]),
    ("unknown feature in service", f"{S}[1]", "spend:nope", None, ["'spend:nope'", "sum_1h"]),
    ("unknown set in service", f"{S}[0]", "spnd:sum_1h", None, ["'spnd:sum_1h'", "'spend'"]),
    ("malformed reference", f"{S}[0]", "sum_1h", None, ["'sum_1h'", "feature_set:feature"]),
    ("missing schema file", "sources[0].schema", "nope.avsc", None, ["nope.avsc", "not found"]),
    ("timestamp not in schema", "sources[0].timestamp", "ts", None, ["'ts'", "'event_time'"]),
    (
        "entity key not in schema", "entities[0].keys", ["customer_id"], "feature_sets[0].entity",
        ["'customer_id'", "'txns'", "'user_id'", "entities[0].keys"],
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("path", "value", "where", "fragments"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_each_error_names_file_path_value_and_hint(
    tmp_path: Path, path: str, value: Any, where: str | None, fragments: list[str]
) -> None:
    doc = base()
    _assign(doc, path, value)
    file = write(tmp_path, doc)
    message = error_of(file)
    assert message.startswith("1 problem(s)"), message  # and no follow-on errors
    assert f"{file}: {where or path}: " in message, message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_duplicate_feature_set_names_point_at_both(tmp_path: Path) -> None:
    doc = base()
    doc["feature_sets"].append(copy.deepcopy(fs0(doc)))
    path = write(tmp_path, doc)
    message = error_of(path)
    assert f"{path}: feature_sets[1].name: " in message, message
    assert "'spend'" in message and "feature_sets[0]" in message and "rename" in message


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("{not json", ["not valid JSON"]),
        ('{"type": "enum", "name": "E", "symbols": ["A"]}', ["record", "'enum'"]),
        ("[1, 2]", ["record"]),
        (
            '{"type": "record", "name": "R", "fields": [{"name": "x", "type": "nosuchtype"}]}',
            ["nosuchtype"],
        ),
    ],
    ids=["not json", "enum", "json list", "unknown type"],
)
def test_invalid_schema_file(tmp_path: Path, text: str, fragments: list[str]) -> None:
    doc = base()
    doc["sources"][0]["schema"] = "bad.avsc"
    path = write(tmp_path, doc)
    (tmp_path / "bad.avsc").write_text(text, encoding="utf-8")
    message = error_of(path)
    assert f"{path}: sources[0].schema: " in message and "bad.avsc" in message, message
    for fragment in fragments:
        assert fragment in message, message


def test_all_problems_of_a_file_are_reported_together(tmp_path: Path) -> None:
    doc = base()
    doc["colour"] = "blue"
    fs0(doc)["features"][0]["window"] = "90x"
    fs0(doc)["features"][1]["field"] = "amout"
    path = write(tmp_path, doc)
    message = error_of(path)
    assert message.startswith("3 problem(s)"), message
    lines = message.splitlines()[1:]
    assert len(lines) == 3
    assert any(f"{path}: colour: " in line for line in lines)
    assert any(
        f"{path}: feature_sets[0].features[0].window: " in line and "'90x'" in line
        for line in lines
    )
    assert any(
        f"{path}: feature_sets[0].features[1].field: " in line and "'amout'" in line
        for line in lines
    )


def test_set_level_problems_are_reported_without_follow_on_errors(tmp_path: Path) -> None:
    doc = base()
    fs0(doc).update(resolution="1x", ttl="soon")
    fs0(doc)["features"][0]["window"] = "7m"
    fs0(doc)["features"][1]["field"] = "amout"
    path = write(tmp_path, doc)
    message = error_of(path)
    assert message.startswith("3 problem(s)"), message
    assert f"{path}: feature_sets[0].resolution: got '1x'" in message, message
    assert f"{path}: feature_sets[0].ttl: got 'soon'" in message, message
    assert f"{path}: feature_sets[0].features[1].field: " in message, message

    for feature in fs0(doc)["features"]:
        feature["window"] = "2y"
    message = error_of(write(tmp_path, doc))
    assert message.startswith("5 problem(s)") and "'soon'" in message, message
    assert "no features" not in message and "unknown feature" not in message, message


def test_aggregation_problems_name_their_entry(tmp_path: Path) -> None:
    doc = base()
    fs0(doc)["aggregations"] = [
        {"field": "amount", "functions": ["sum"], "windows": ["1h", "2x"], "colour": 1},
        {"field": "amount", "functions": ["mean"], "windows": ["30s"]},
        "sum of amount",
    ]
    path = write(tmp_path, doc)
    message = error_of(path)
    assert (
        f"{path}: feature_sets[0].aggregations[0].windows[1]: " in message and "'2x'" in message
    ), message
    assert f"{path}: feature_sets[0].aggregations[0].colour: unknown key" in message, message
    assert (
        f"{path}: feature_sets[0].aggregations[1].windows[0]: " in message and "multiple" in message
    ), message
    assert f"{path}: feature_sets[0].aggregations[2]: " in message, message
    assert message.startswith("4 problem(s)"), message


def test_yaml_that_is_not_a_mapping_or_not_yaml(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("- just\n- a list\n", encoding="utf-8")
    (tmp_path / "b.yaml").write_text("entities: [unclosed\n", encoding="utf-8")
    message = error_of(tmp_path)
    assert "a.yaml: expected a mapping" in message, message
    assert "b.yaml: not valid YAML" in message, message
