"""The names the demo keeps to: the topic prefix, the dead-letter topic, the marked home.

No services: a catalog in tmp_path, and the demo's reset refuses before it reaches Kafka.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from headwater.apply import plan_definitions
from headwater.connectors.catalog import Catalog
from headwater.demo import _demo_settings, _reset_own_state
from headwater.schemas.errors import ConfigError, DefinitionError
from headwater.schemas.serialize import definitions_from_dict, source_to_dict
from headwater.schemas.settings import load_settings

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _defs_dir(tmp_path: Path, **source: str) -> Path:
    defs_dir = tmp_path / "defs"
    shutil.copytree(EXAMPLES, defs_dir, dirs_exist_ok=True)
    doc = yaml.safe_load((defs_dir / "features.yaml").read_text())
    doc["sources"][0].update(source)
    (defs_dir / "features.yaml").write_text(yaml.safe_dump(doc))
    return defs_dir


def test_topic_prefix_goes_before_default_names_only(tmp_path: Path) -> None:
    catalog = Catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    plan = plan_definitions(catalog, _defs_dir(tmp_path), topic_prefix="team-a.")
    source = plan.definitions.source("transactions")
    assert (source.topic, source.dlq_topic) == (
        "team-a.raw.transactions",
        "team-a.dlq.transactions",
    )

    explicit = plan_definitions(
        catalog,
        _defs_dir(tmp_path, topic="payments", dlq_topic="payments.bad"),
        topic_prefix="team-a.",
    ).definitions.source("transactions")
    assert (explicit.topic, explicit.dlq_topic) == ("payments", "payments.bad")

    unprefixed = plan_definitions(catalog, _defs_dir(tmp_path)).definitions.source("transactions")
    assert (unprefixed.topic, unprefixed.dlq_topic) == ("raw.transactions", "dlq.transactions")


def test_catalog_keeps_the_full_names_and_refuses_to_move_them(tmp_path: Path) -> None:
    catalog = Catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    plan = plan_definitions(catalog, _defs_dir(tmp_path), topic_prefix="team-a.")
    catalog.save(plan.definitions, plan.to_save, {})
    stored = catalog.definitions().source("transactions")
    assert (stored.topic, stored.dlq_topic) == (
        "team-a.raw.transactions",
        "team-a.dlq.transactions",
    )
    with pytest.raises(
        DefinitionError, match="dead-letter topic 'team-a.dlq.transactions' -> 'dlq.transactions'"
    ):
        plan_definitions(catalog, _defs_dir(tmp_path))


def test_a_catalog_written_before_dlq_topics_were_stored_reads_the_old_default() -> None:
    old = {
        "name": "clicks",
        "topic": "raw.clicks",
        "timestamp": "t",
        "description": "",
        "schema": {"type": "record", "name": "C", "fields": [{"name": "t", "type": "long"}]},
    }
    (source,) = definitions_from_dict({"sources": [old]}).sources
    assert source.dlq_topic == "dlq.clicks"
    assert source_to_dict(source) == {**old, "dlq_topic": "dlq.clicks"}


def test_demo_names_are_its_own_and_it_refuses_a_home_it_did_not_make(tmp_path: Path) -> None:
    settings, env = _demo_settings(load_settings(home=tmp_path / "home"), 8765)
    assert settings.kafka.topic_prefix == env["HEADWATER_KAFKA__TOPIC_PREFIX"] == "headwater-demo."
    assert settings.redis.key_prefix == env["HEADWATER_REDIS__KEY_PREFIX"] == "hw-demo"
    assert (
        settings.redis.url.endswith("/15")
        and settings.home == (tmp_path / "home" / "demo").resolve()
    )
    settings.home.mkdir(parents=True)
    (settings.home / "mine.txt").write_text("not the demo's")
    with pytest.raises(ConfigError, match=r"is not the demo's \(no .headwater-demo file in it\)"):
        _reset_own_state(settings)
    assert (settings.home / "mine.txt").read_text() == "not the demo's"
