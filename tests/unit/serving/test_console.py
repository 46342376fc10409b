"""The console's files and the catalog endpoints it added, without services: search pages,
a source's schema, the diff of two versions, the files shipped as package data and served
without a key while every data call needs one. (The browser tests are
tests/integration/test_console.py.)"""

from __future__ import annotations

import fnmatch
import re
import tomllib
from dataclasses import replace
from importlib import resources
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from headwater.connectors.catalog import Catalog
from headwater.examples import EXAMPLES
from headwater.schemas.definitions import Definitions, Feature, FeatureSet
from headwater.schemas.loader import load_definitions
from headwater.schemas.settings import Settings, load_settings
from headwater.serving.app import create_app
from headwater.serving.console_api import CONSOLE_PACKAGE, console_asset
from headwater.serving.console_views import search_catalog, source_view, version_diff
from headwater.serving.errors import BadRequestError, NotFoundError

ROOT = Path(__file__).resolve().parents[3]


def _many(count: int) -> Definitions:
    defs = load_definitions(EXAMPLES)
    base = defs.feature_set("user_spend")
    sets = tuple(
        replace(base, name=f"set_{i:03d}", owner=f"team-{i % 4}", tags=(f"t{i % 3}",))
        for i in range(count)
    )
    return replace(defs, feature_sets=(*sets, base))


def test_search_answers_one_page_and_the_total() -> None:
    defs = _many(500)
    first = search_catalog(defs, "", offset=0, limit=25)
    assert first["total"] == 501
    assert [i["name"] for i in first["items"]] == [f"set_{i:03d}" for i in range(25)]
    last = search_catalog(defs, "", offset=500, limit=25)
    assert [i["name"] for i in last["items"]] == ["user_spend"]
    team = search_catalog(defs, "TEAM-2 t1", limit=200)
    expected = [f"set_{i:03d}" for i in range(500) if i % 4 == 2 and i % 3 == 1]
    assert team["total"] == len(expected) and [i["name"] for i in team["items"]] == expected
    # A word found in a feature lists the set and names the feature.
    hit = search_catalog(defs, "user_spend last_merchant")
    assert [i["name"] for i in hit["items"]] == ["user_spend"]
    assert hit["items"][0]["matched_features"] == ["last_merchant"]
    assert search_catalog(defs, "gold")["total"] == 501  # labels
    assert search_catalog(defs, "gold payments")["total"] == 1  # and tags
    assert search_catalog(defs, "no-such-word")["total"] == 0
    with pytest.raises(BadRequestError, match="limit must be between 1 and 200"):
        search_catalog(defs, "", limit=0)
    with pytest.raises(BadRequestError, match="offset must be 0 or more"):
        search_catalog(defs, "", offset=-1)


def test_search_lists_a_set_once_by_its_newest_active_version() -> None:
    defs = load_definitions(EXAMPLES)
    v1 = defs.feature_set("user_spend")
    v2 = replace(v1, version=2, owner="fraud-ml")
    (item,) = search_catalog(replace(defs, feature_sets=(v1, v2)), "")["items"]
    assert (item["version"], item["active_versions"], item["owner"]) == (2, [1, 2], "fraud-ml")


def test_source_view_names_fields_types_and_readers() -> None:
    defs = load_definitions(EXAMPLES)
    view = source_view(defs, "transactions")
    assert view["topic"] == "raw.transactions" and view["timestamp"] == "event_time"
    assert {f["name"]: f["type"] for f in view["fields"]}["amount"] == "double"
    assert view["feature_sets"] == ["user_spend"]
    with pytest.raises(NotFoundError, match=r"unknown source 'nosuch'; known: \['transactions'\]"):
        source_view(defs, "nosuch")


def test_version_diff_words_changes_as_apply_does() -> None:
    defs = load_definitions(EXAMPLES)
    v1 = defs.feature_set("user_spend")
    features = tuple(
        replace(f, window_ms=2 * 86_400_000) if f.name == "txn_count_1d" else f for f in v1.features
    )
    v2 = replace(v1, version=2, features=features, owner="fraud-ml")
    v3 = replace(v2, version=3, features=(*features, Feature(name="n_total", function="count")))
    versions: list[tuple[FeatureSet, str]] = [(v1, "retired"), (v2, "active"), (v3, "active")]
    diff = version_diff(versions, defs, "user_spend", 1, 2)
    assert diff["breaking"] == ["feature 'txn_count_1d': count() over 1d -> count() over 2d"]
    assert diff["compatible"] == ["owner: 'risk-team' -> 'fraud-ml'"]
    assert (diff["from"]["status"], diff["to"]["version"]) == ("retired", 2)
    assert version_diff(versions, defs, "user_spend", 2, 3)["compatible"] == [
        "new feature(s) ['n_total']"
    ]
    with pytest.raises(NotFoundError, match=r"has no version 7; it has \[1, 2, 3\]"):
        version_diff(versions, defs, "user_spend", 1, 7)
    with pytest.raises(NotFoundError, match="unknown feature set 'x'"):
        version_diff([], defs, "x", 1, 2)


def _console_files() -> list[str]:
    return sorted(
        p.name
        for p in (ROOT / "serving" / "console").iterdir()
        if p.suffix != ".py" and p.is_file()
    )


def test_every_console_file_is_package_data_and_resolves_from_the_package() -> None:
    """What ``pip install .`` (a wheel, as the Dockerfile installs) ships: pyproject's
    package-data patterns must cover every file, and the served page names only those."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"][CONSOLE_PACKAGE]
    files = _console_files()
    assert {"index.html", "console.js", "charts.js", "pages.js", "analysis.js", "start.js"} <= set(
        files
    )
    uncovered = [f for f in files if not any(fnmatch.fnmatch(f, p) for p in patterns)]
    assert uncovered == [], f"add patterns for {uncovered} to package-data {CONSOLE_PACKAGE!r}"
    package = resources.files(CONSOLE_PACKAGE)
    for name in files:
        assert (
            package.joinpath(name).read_bytes()
            == (ROOT / "serving" / "console" / name).read_bytes()
        )
    index = package.joinpath("index.html").read_text()
    referenced = re.findall(r'(?:src|href)="/ui/([^"]+)"', index)
    assert sorted(referenced) == sorted(f for f in files if f != "index.html")
    assert "http://" not in index and "https://" not in index  # nothing from the internet


def test_console_assets_are_only_the_packages_own_files() -> None:
    found = console_asset("console.js")
    assert found is not None and found[1].startswith("text/javascript")
    for name in ("../app.py", "__init__.py", ".hidden.js", "nosuch.js", "a/b.css", "index"):
        assert console_asset(name) is None, name


def _settings(tmp_path: Path) -> Settings:
    settings = load_settings(home=tmp_path / "home", serving={"host": "0.0.0.0"})
    catalog = Catalog(settings.catalog_url)
    defs = load_definitions(EXAMPLES)
    catalog.save(defs, defs.feature_sets, {})
    return settings


def test_the_console_loads_without_a_key_and_its_data_needs_one(tmp_path: Path) -> None:
    with TestClient(create_app(_settings(tmp_path))) as client:  # beyond loopback: keys needed
        page = client.get("/ui/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "script-src 'self';" in page.headers["content-security-policy"]
        assert "<script>" not in page.text and "style=" not in page.text  # the CSP allows none
        assert client.get("/ui/charts.js").status_code == 200
        assert client.get("/ui", follow_redirects=False).headers["location"] == "/ui/"
        missing = client.get("/ui/nosuch.js")
        assert missing.status_code == 404 and "open /ui/" in missing.json()["detail"]
        for path in (
            "/v1/catalog/search",
            "/v1/sources/transactions",
            "/v1/feature-sets/user_spend/diff?from=1&to=1",
            "/v1/dead-letters/transactions",
        ):
            assert client.get(path).status_code == 401, path


def test_the_console_endpoints_answer_on_loopback_without_keys(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path / "home")
    catalog = Catalog(settings.catalog_url)
    defs = load_definitions(EXAMPLES)
    catalog.save(defs, defs.feature_sets, {})
    with TestClient(create_app(settings)) as client:
        page = client.get("/v1/catalog/search", params={"q": "risk", "limit": 5}).json()
        assert page["total"] == 1 and page["items"][0]["name"] == "user_spend"
        too_big = client.get("/v1/catalog/search", params={"limit": 201})
        assert too_big.status_code == 422 and "limit" in too_big.text
        assert client.get("/v1/sources/transactions").json()["schema_subject"] == (
            "raw.transactions-value"
        )
        same = client.get("/v1/feature-sets/user_spend/diff", params={"from": 1, "to": 1}).json()
        assert same["breaking"] == [] and same["compatible"] == []
        assert client.get("/v1/feature-sets/user_spend/diff?from=1&to=2").status_code == 404
        unknown = client.get("/v1/dead-letters/nosuch")
        assert unknown.status_code == 404
        assert unknown.json()["detail"] == "unknown source 'nosuch'; known: ['transactions']"
