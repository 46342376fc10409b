"""``apply``'s planning against a catalog (SQLite in tmp_path; no services needed)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest

from headwater.apply import plan_definitions
from headwater.connectors.catalog import Catalog
from headwater.schemas.errors import DefinitionError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def applied(tmp_path: Path) -> tuple[Catalog, Path]:
    defs_dir = tmp_path / "defs"
    shutil.copytree(EXAMPLES, defs_dir)
    catalog = Catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    plan = plan_definitions(catalog, defs_dir)
    catalog.save(plan.definitions, plan.to_save, {})
    return catalog, defs_dir


def _schema(defs_dir: Path) -> dict[str, Any]:
    return cast(dict[str, Any], json.loads((defs_dir / "transactions.avsc").read_text()))


def test_compatible_schema_change_is_accepted(applied: tuple[Catalog, Path]) -> None:
    catalog, defs_dir = applied
    schema = _schema(defs_dir)
    schema["fields"].append({"name": "channel", "type": "string", "default": "web"})
    (defs_dir / "transactions.avsc").write_text(json.dumps(schema))
    plan = plan_definitions(catalog, defs_dir)
    (source,) = [i for i in plan.items if i.kind == "source"]
    assert source.action == "update"


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (
            lambda s: s["fields"].append({"name": "channel", "type": "string"}),
            "field 'channel' is new and has no default",
        ),
        (lambda s: s["fields"][4].update(type="long"), "field 'currency'"),
    ],
)
def test_incompatible_schema_change_is_refused_naming_the_field(
    applied: tuple[Catalog, Path], change: Callable[[dict[str, Any]], None], fragment: str
) -> None:
    catalog, defs_dir = applied
    schema = _schema(defs_dir)
    change(schema)
    (defs_dir / "transactions.avsc").write_text(json.dumps(schema))
    with pytest.raises(DefinitionError) as info:
        plan_definitions(catalog, defs_dir)
    assert "source 'transactions'" in str(info.value)
    assert fragment in str(info.value)
    assert "BACKWARD" in str(info.value)


def test_topic_of_a_source_cannot_change(applied: tuple[Catalog, Path]) -> None:
    catalog, defs_dir = applied
    text = (
        (defs_dir / "features.yaml")
        .read_text()
        .replace("name: transactions\n", "name: transactions\n    topic: raw.other\n")
    )
    (defs_dir / "features.yaml").write_text(text)
    with pytest.raises(
        DefinitionError, match="topic 'raw.transactions' -> 'raw.other' cannot change"
    ):
        plan_definitions(catalog, defs_dir)
