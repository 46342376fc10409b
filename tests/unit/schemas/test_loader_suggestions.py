"""An unknown name from a closed set is reported at the exact path of the name, with the
nearest known name when one is close (``summ``: did you mean ``sum``?).

Closed sets: aggregation functions, the keys of a definition item (and the file's sections),
the entities, sources, feature sets and features that definitions refer to, and the fields
of a source's schema.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from headwater.schemas.aggregations import AGGREGATION_FUNCTIONS
from headwater.schemas.definitions import Feature
from tests.unit.schemas.test_loader import _assign, base, error_of, fs0, write

F = "feature_sets[0].features"
# (id, path to set, value, path the error must name (None: the same), suggested name)
CASES = [
    ("function", f"{F}[1].function", "summ", None, "sum"),
    ("section", "entites", [], None, "entities"),
    ("entity key", "entities[0].kyes", ["user_id"], None, "keys"),
    ("source key", "sources[0].timestmp", "event_time", None, "timestamp"),
    ("feature set key", "feature_sets[0].resolutin", "1m", None, "resolution"),
    ("feature key", f"{F}[0].windw", "1h", None, "window"),
    ("service key", "feature_services[0].feature", ["spend:sum_1h"], None, "features"),
    ("entity of a set", "feature_sets[0].entity", "usr", None, "user"),
    ("source of a set", "feature_sets[0].source", "txn", None, "txns"),
    ("feature set of a service", "feature_services[0].features[0]", "spnd:sum_1h", None, "spend"),
    ("feature of a service", "feature_services[0].features[0]", "spend:sum_1hh", None, "sum_1h"),
    ("field of a feature", f"{F}[1].field", "amout", None, "amount"),
    ("timestamp of a source", "sources[0].timestamp", "event_tme", None, "event_time"),
    ("key of an entity", "entities[0].keys", ["usr_id"], "feature_sets[0].entity", "user_id"),
]  # fmt: skip


def _problem(tmp_path: Path, doc: dict[str, Any]) -> tuple[Path, str]:
    """The file ``doc`` is written to, and its one problem."""
    path = write(tmp_path, doc)
    message = error_of(path)
    assert message.startswith("1 problem(s)"), message  # and no follow-on errors
    return path, message.splitlines()[1].strip()


@pytest.mark.parametrize(
    ("path", "value", "where", "suggestion"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_an_unknown_name_is_reported_at_its_path_with_the_nearest_known_name(
    tmp_path: Path, path: str, value: Any, where: str | None, suggestion: str
) -> None:
    doc = base()
    _assign(doc, path, value)
    file, problem = _problem(tmp_path, doc)
    assert problem.startswith(f"{file}: {where or path}: "), problem
    assert problem.endswith(f"; did you mean {suggestion!r}?"), problem


def test_an_unknown_function_names_the_function_and_every_known_one(tmp_path: Path) -> None:
    doc = base()
    fs0(doc)["features"][1]["function"] = "summ"
    file, problem = _problem(tmp_path, doc)
    assert problem == (
        f"{file}: {F}[1].function: unknown function 'summ'; expected one of "
        f"{list(AGGREGATION_FUNCTIONS)}; did you mean 'sum'?"
    )


def test_an_unknown_function_in_the_shorthand_is_reported_once_at_its_entry(
    tmp_path: Path,
) -> None:
    doc = base()
    fs0(doc)["aggregations"] = [
        {"field": "amount", "functions": ["sum", "meen"], "windows": ["1h", "1d"]}
    ]
    file, problem = _problem(tmp_path, doc)
    assert problem.startswith(
        f"{file}: feature_sets[0].aggregations[0].functions[1]: unknown function 'meen'; "
    ), problem
    assert problem.endswith("; did you mean 'mean'?"), problem


@pytest.mark.parametrize(
    ("relations", "where", "suggestion"),
    [
        ({"merchnt": "merchant_id"}, "relations.merchnt", "merchant"),
        ({"merchant": "merchant"}, "relations.merchant", "merchant_id"),
    ],
    ids=["entity", "field"],
)
def test_a_relation_to_an_unknown_entity_or_field_suggests_the_nearest(
    tmp_path: Path, relations: dict[str, str], where: str, suggestion: str
) -> None:
    doc = base()
    doc["entities"].append({"name": "merchant", "keys": ["merchant_id"]})
    fs0(doc)["relations"] = relations
    file, problem = _problem(tmp_path, doc)
    assert problem.startswith(f"{file}: feature_sets[0].{where}: "), problem
    assert problem.endswith(f"; did you mean {suggestion!r}?"), problem


@pytest.mark.parametrize(
    ("path", "value"),
    [(f"{F}[1].function", "zzz"), ("feature_sets[0].entity", "zzz"), (f"{F}[0].zzz", 1)],
    ids=["function", "entity", "key"],
)
def test_no_suggestion_when_no_known_name_is_close(tmp_path: Path, path: str, value: Any) -> None:
    doc = base()
    _assign(doc, path, value)
    file, problem = _problem(tmp_path, doc)
    assert problem.startswith(f"{file}: {path}: "), problem
    assert "did you mean" not in problem, problem


def test_a_single_unknown_function_in_the_shorthand_is_reported_at_functions(
    tmp_path: Path,
) -> None:
    doc = base()
    fs0(doc)["aggregations"] = [{"field": "amount", "functions": "summ"}]
    file, problem = _problem(tmp_path, doc)
    assert problem.startswith(
        f"{file}: feature_sets[0].aggregations[0].functions: unknown function 'summ'; "
    ), problem
    assert problem.endswith("; did you mean 'sum'?"), problem


def test_a_feature_built_in_python_suggests_the_nearest_function() -> None:
    with pytest.raises(ValueError, match=r"unknown function 'summ'; .*; did you mean 'sum'\?$"):
        Feature(name="spend", function="summ", field="amount")
