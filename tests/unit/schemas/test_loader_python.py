"""Definitions written as a Python module load like YAML ones, with the same checks."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from headwater.schemas.errors import DefinitionError
from headwater.schemas.loader import load_definitions

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"

MODULE = """
from pathlib import Path

from headwater.schemas.avro import AvroSchema
from headwater.schemas.definitions import Definitions, Entity, Feature, FeatureService, FeatureSet, Source

user = Entity(name="user", keys=("user_id",))
_schema = AvroSchema.from_file(Path(__file__).parent / "transactions.avsc")
transactions = Source(name="transactions", schema=_schema, timestamp="event_time")
also_user = user  # the same object under a second name counts once
sets = [
    FeatureSet(
        name="user_spend",
        entity="user",
        source="transactions",
        filter="status == 'approved'",
        features=(
            Feature(name="spend_1h", function="sum", field="{field}", window_ms=3_600_000),
            Feature(name="last_merchants", function="last_n", field="merchant_id", n=3),
        ),
    )
]
bundle = Definitions(feature_services=(FeatureService(name="model", features=("user_spend:spend_1h",)),))
"""


def _write(tmp_path: Path, field: str = "amount") -> Path:
    shutil.copy(EXAMPLES / "transactions.avsc", tmp_path / "transactions.avsc")
    (tmp_path / "features.py").write_text(MODULE.replace("{field}", field))
    return tmp_path


def test_python_module_definitions_load(tmp_path: Path) -> None:
    defs = load_definitions(_write(tmp_path))
    assert [e.name for e in defs.entities] == ["user"]
    fs = defs.feature_set("user_spend")
    assert fs.feature("last_merchants").n == 3
    assert fs.filter == "status == 'approved'"
    assert defs.feature_service("model").features == ("user_spend:spend_1h",)


def test_python_module_errors_name_the_file_and_variable(tmp_path: Path) -> None:
    with pytest.raises(DefinitionError) as info:
        load_definitions(_write(tmp_path, field="amout"))
    message = str(info.value)
    assert "features.py: sets[0].features[0].field" in message
    assert "'amout'" in message


def test_a_module_that_fails_is_reported_not_raised(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("raise RuntimeError('boom')\n")
    with pytest.raises(
        DefinitionError, match=r"broken.py: <module>: running the module failed: RuntimeError: boom"
    ):
        load_definitions(tmp_path)


def test_python_module_request_features_are_type_checked(tmp_path: Path) -> None:
    text = MODULE.replace("{field}", "amount").replace(
        "        filter=\"status == 'approved'\",",
        "        filter=\"status == 'approved'\",\n"
        "        request_schema={'amount': 'double'},\n"
        "        request_features={'ratio': 'request.amount / nullif(spend_1h, 0)',"
        " 'bad': 'last_merchants + 1'},",
    )
    shutil.copy(EXAMPLES / "transactions.avsc", tmp_path / "transactions.avsc")
    (tmp_path / "features.py").write_text(text)
    with pytest.raises(DefinitionError) as info:
        load_definitions(tmp_path)
    message = str(info.value)
    assert "features.py: sets[0].request_features.bad" in message
    assert "'last_merchants' (last_n) has no value an expression can use" in message
    assert "ratio" not in message
