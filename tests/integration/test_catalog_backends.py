"""Contract tests of ``headwater.connectors.catalog.Catalog``: the same bodies on every backend.

``sqlite`` uses a file in ``tmp_path``; ``postgres`` uses the session's server
(``tests/integration/postgres.py``) with a database of its own per test, dropped afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

import headwater.connectors.catalog.store as catalog_module
from headwater.connectors.catalog import Catalog, CatalogError
from headwater.schemas.avro import AvroSchema
from headwater.schemas.definitions import Definitions, FeatureSet
from headwater.schemas.loader import load_definitions

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

OpenCatalog = Callable[[], Catalog]


def _record(name: str, *fields: str) -> AvroSchema:
    return AvroSchema.from_dict(
        {"type": "record", "name": name, "fields": [{"name": f, "type": "string"} for f in fields]}
    )


S1 = _record("Event", "a")
S2 = _record("Event", "a", "b")
S3 = _record("Other", "x")


@pytest.fixture
def fresh_postgres(postgres_url: str) -> Iterator[str]:
    """URL of a new, empty database on the session's server, dropped after the test."""
    url = make_url(postgres_url)
    name = f"hw_{uuid.uuid4().hex}"
    admin = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgres"])
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty catalog database on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalog.db'}"
    return str(request.getfixturevalue("fresh_postgres"))


@pytest.fixture
def open_catalog(catalog_url: str) -> Iterator[OpenCatalog]:
    """Factory: another ``Catalog`` on the test's database; all are closed at teardown."""
    opened: list[Catalog] = []

    def factory() -> Catalog:
        opened.append(Catalog(catalog_url))
        return opened[-1]

    yield factory
    for cat in opened:
        cat.close()


@pytest.fixture
def catalog(open_catalog: OpenCatalog) -> Catalog:
    return open_catalog()


@pytest.fixture(scope="module")
def example_defs() -> Definitions:
    return load_definitions(EXAMPLES)


@pytest.fixture
def v1(example_defs: Definitions) -> FeatureSet:
    return example_defs.feature_set("user_spend")


@pytest.fixture
def v2(v1: FeatureSet) -> FeatureSet:
    return replace(v1, version=2, description="Card spend per user, second version")


def _versions(cat: Catalog, subject: str | None = None) -> list[tuple[str, int, int]]:
    return [(v.subject, v.version, v.id) for v in cat.schema_versions(subject)]


# --- schema ids -------------------------------------------------------------------------


def test_schema_ids_are_global_per_text_and_versions_per_subject(catalog: Catalog) -> None:
    first = catalog.register_schema("orders-value", S1)
    assert catalog.register_schema("orders-value", S1) == first
    assert _versions(catalog) == [("orders-value", 1, first)]

    second = catalog.register_schema("orders-value", S2)
    assert second != first
    assert catalog.register_schema("payments-value", S1) == first
    assert _versions(catalog) == [
        ("orders-value", 1, first),
        ("orders-value", 2, second),
        ("payments-value", 1, first),
    ]
    assert catalog.schema_by_id(first) == S1
    assert catalog.schema_by_id(second) == S2


def test_registering_an_old_version_again_adds_nothing(catalog: Catalog) -> None:
    first = catalog.register_schema("orders-value", S1)
    catalog.register_schema("orders-value", S2)
    assert catalog.register_schema("orders-value", S1) == first
    assert [v.version for v in catalog.schema_versions("orders-value")] == [1, 2]


@pytest.mark.parametrize("unknown", [0, 999_999])
def test_schema_by_unknown_id_raises(catalog: Catalog, unknown: int) -> None:
    catalog.register_schema("orders-value", S1)
    with pytest.raises(CatalogError, match=f"schema id {unknown} is not registered"):
        catalog.schema_by_id(unknown)


def test_schema_versions_are_ordered_by_subject_then_version(catalog: Catalog) -> None:
    ids = {
        ("z-value", S1.canonical): catalog.register_schema("z-value", S1),
        ("a-value", S3.canonical): catalog.register_schema("a-value", S3),
        ("z-value", S2.canonical): catalog.register_schema("z-value", S2),
        ("a-value", S1.canonical): catalog.register_schema("a-value", S1),
    }
    listed = catalog.schema_versions()
    assert [(v.subject, v.version) for v in listed] == [
        ("a-value", 1),
        ("a-value", 2),
        ("z-value", 1),
        ("z-value", 2),
    ]
    assert [v.schema for v in listed] == [S3.canonical, S1.canonical, S1.canonical, S2.canonical]
    assert all(v.id == ids[v.subject, v.schema] for v in listed)
    assert [v.version for v in catalog.schema_versions("z-value")] == [1, 2]
    assert catalog.schema_versions("missing-value") == []


def test_delete_subject_forgets_versions_but_keeps_ids(catalog: Catalog) -> None:
    first = catalog.register_schema("orders-value", S1)
    second = catalog.register_schema("orders-value", S2)
    catalog.register_schema("payments-value", S1)

    assert catalog.delete_subject("orders-value") == [1, 2]
    assert catalog.schema_versions("orders-value") == []
    assert _versions(catalog) == [("payments-value", 1, first)]
    assert catalog.schema_by_id(second) == S2
    assert catalog.register_schema("orders-value", S2) == second
    assert [v.id for v in catalog.schema_versions("orders-value")] == [second]
    assert catalog.delete_subject("never-registered") == []
    assert [(e.action, e.target) for e in catalog.audit()] == [
        ("delete_subject", "orders-value"),
        ("delete_subject", "never-registered"),
    ]


# --- definitions ------------------------------------------------------------------------


def test_empty_catalog_has_no_definitions(catalog: Catalog) -> None:
    with pytest.raises(CatalogError, match="catalog is empty"):
        catalog.definitions()
    assert catalog.audit() == []


def test_saved_definitions_round_trip(open_catalog: OpenCatalog, example_defs: Definitions) -> None:
    catalog = open_catalog()
    catalog.save(example_defs, example_defs.feature_sets, {"plan": ["create everything"]})
    assert catalog.definitions() == example_defs
    assert catalog.definitions(include_retired=True) == example_defs
    assert open_catalog().definitions() == example_defs


def test_saving_the_same_definitions_again_changes_nothing(
    catalog: Catalog, example_defs: Definitions
) -> None:
    catalog.save(example_defs, example_defs.feature_sets, {})
    catalog.save(example_defs, example_defs.feature_sets, {})
    assert catalog.definitions() == example_defs
    assert [e.action for e in catalog.audit()] == ["apply", "apply"]


def test_new_feature_set_version_is_served_beside_the_old(
    catalog: Catalog, example_defs: Definitions, v1: FeatureSet, v2: FeatureSet
) -> None:
    catalog.save(example_defs, [v1], {"step": 1})
    assert catalog.definitions().feature_sets == (v1,)
    catalog.save(example_defs, [v2], {"step": 2})

    defs = catalog.definitions()
    assert defs.feature_sets == (v1, v2)
    assert defs.feature_set("user_spend") == v2
    assert defs.feature_set("user_spend", 1) == v1
    assert defs.feature_set("user_spend", 2) == v2
    assert catalog.feature_set_versions("user_spend") == [(v1, "active"), (v2, "active")]


def test_retire_hides_a_version_unless_retired_ones_are_asked_for(
    catalog: Catalog, example_defs: Definitions, v1: FeatureSet, v2: FeatureSet
) -> None:
    catalog.save(example_defs, [v1], {})
    catalog.save(example_defs, [v2], {})
    assert catalog.definitions().feature_sets == (v1, v2)

    assert catalog.retire("user_spend", 1) == v1
    assert catalog.definitions().feature_sets == (v2,)
    assert catalog.definitions().feature_set("user_spend") == v2
    assert catalog.definitions(include_retired=True).feature_sets == (v1, v2)
    assert catalog.feature_set_versions("user_spend") == [(v1, "retired"), (v2, "active")]


def test_retiring_the_only_active_version_is_refused(
    catalog: Catalog, example_defs: Definitions, v1: FeatureSet, v2: FeatureSet
) -> None:
    catalog.save(example_defs, [v1], {})
    with pytest.raises(
        CatalogError, match=r"user_spend@v1 is the only active version .*apply a new version"
    ):
        catalog.retire("user_spend", 1)

    catalog.save(example_defs, [v2], {})
    catalog.retire("user_spend", 1)
    with pytest.raises(CatalogError, match=r"user_spend@v2 is the only active version"):
        catalog.retire("user_spend", 2)
    assert catalog.definitions().feature_sets == (v2,)


def test_retiring_an_unknown_version_names_the_known_ones(
    catalog: Catalog, example_defs: Definitions, v1: FeatureSet, v2: FeatureSet
) -> None:
    catalog.save(example_defs, [v1], {})
    catalog.save(example_defs, [v2], {})
    catalog.retire("user_spend", 1)
    with pytest.raises(
        CatalogError, match=r"no version 7; it has \['v1 \(retired\)', 'v2 \(active\)'\]"
    ):
        catalog.retire("user_spend", 7)
    with pytest.raises(CatalogError, match=r"'no_such_set' has no version 1; it has no versions"):
        catalog.retire("no_such_set", 1)


def test_audit_records_apply_and_retire_in_order(
    catalog: Catalog, example_defs: Definitions, v1: FeatureSet, v2: FeatureSet
) -> None:
    catalog.save(example_defs, [v1], {"plan": ["create user_spend@v1"]})
    catalog.save(example_defs, [v2], {"plan": ["create user_spend@v2"]})
    catalog.retire("user_spend", 1)

    entries = catalog.audit()
    assert [(e.action, e.target, e.detail) for e in entries] == [
        ("apply", "*", {"plan": ["create user_spend@v1"]}),
        ("apply", "*", {"plan": ["create user_spend@v2"]}),
        ("retire", "user_spend@v1", {}),
    ]
    assert [e.at_ms for e in entries] == sorted(e.at_ms for e in entries)


# --- several catalogs on one database ---------------------------------------------------


def test_two_catalogs_see_each_others_writes(
    open_catalog: OpenCatalog, example_defs: Definitions, v1: FeatureSet, v2: FeatureSet
) -> None:
    writer, reader = open_catalog(), open_catalog()
    writer.save(example_defs, [v1], {})
    assert reader.definitions().feature_sets == (v1,)  # cached from here on

    writer.save(example_defs, [v2], {})
    assert reader.definitions().feature_sets == (v1, v2)
    writer.retire("user_spend", 1)
    assert reader.definitions().feature_sets == (v2,)

    schema_id = reader.register_schema("orders-value", S1)
    assert writer.schema_by_id(schema_id) == S1
    assert _versions(writer) == [("orders-value", 1, schema_id)]
    assert [e.action for e in reader.audit()] == ["apply", "apply", "retire"]


def test_cached_definitions_notice_writes_within_the_same_millisecond(
    open_catalog: OpenCatalog,
    example_defs: Definitions,
    v1: FeatureSet,
    v2: FeatureSet,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Writes stamped with the time of the cached state (same ms, or a clock behind) still show."""
    monkeypatch.setattr(catalog_module, "_now_ms", lambda: 1_700_000_000_000)
    writer, reader = open_catalog(), open_catalog()
    writer.save(example_defs, [v1, v2], {})
    assert reader.definitions().feature_sets == (v1, v2)  # cached from here on

    writer.retire("user_spend", 1)
    assert reader.definitions().feature_sets == (v2,)

    changed = replace(v2, description="changed in place")
    writer.save(example_defs, [changed], {})
    assert reader.definitions().feature_sets == (changed,)
