"""The tree's structure as rules, read from the source: the layers' imports, module sizes, one
import namespace (``headwater``) that a user's own ``schemas.py`` cannot shadow, and a wheel
that installs only that namespace.

Layers, bottom to top: ``schemas`` (pure definitions) < ``connectors`` (stores, Kafka, the
catalog) < ``stream_workers`` | ``serving`` (siblings) < ``headwater``'s own modules (CLI, SDK,
ingest, local stack). A module imports only from its own layer and those below.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SUBPACKAGES = ("schemas", "connectors", "stream_workers", "serving")
# What each layer may import from the project (its own package included).
ALLOWED = {
    "schemas": {"schemas"},
    "connectors": {"schemas", "connectors"},
    "stream_workers": {"schemas", "connectors", "stream_workers"},
    "serving": {"schemas", "connectors", "serving"},
}
MAX_LINES = 500


def _product_modules() -> dict[Path, str]:
    """Every product module (real files, each once) and the package it belongs to."""
    modules: dict[Path, str] = {}
    for package in SUBPACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            modules[path] = package
    for path in (ROOT / "headwater").rglob("*.py"):
        if path.relative_to(ROOT / "headwater").parts[0] not in SUBPACKAGES:
            modules[path] = "headwater"
    return modules


def _imports(path: Path) -> list[tuple[int, str]]:
    """``(line, absolute module name)`` of every import in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def _layer_of(module: str) -> str | None:
    """The project layer an imported module belongs to (``None``: not the project's)."""
    parts = module.split(".")
    if parts[0] != "headwater":
        return None
    if len(parts) > 1 and parts[1] in SUBPACKAGES:
        return parts[1]
    return "headwater"


def test_the_symlinked_subpackages_are_the_top_level_folders() -> None:
    for package in SUBPACKAGES:
        link = ROOT / "headwater" / package
        assert link.is_symlink() and link.resolve() == (ROOT / package).resolve(), link


def test_each_layer_imports_only_from_itself_and_below() -> None:
    wrong = []
    for path, package in _product_modules().items():
        for line, module in _imports(path):
            if module.split(".")[0] in SUBPACKAGES:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports bare {module!r}")
                continue
            layer = _layer_of(module)
            if package != "headwater" and layer is not None and layer not in ALLOWED[package]:
                wrong.append(f"{path.relative_to(ROOT)}:{line} ({package}) imports {module}")
    assert wrong == []


def test_tests_and_benchmarks_import_the_installed_names_only() -> None:
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports bare {module!r}"
        for folder in ("tests", "bench")
        for path in (ROOT / folder).rglob("*.py")
        for line, module in _imports(path)
        if module.split(".")[0] in SUBPACKAGES
    ]
    assert wrong == []


def test_no_module_outside_the_tests_is_over_500_lines() -> None:
    paths = [*_product_modules(), *(ROOT / "bench").rglob("*.py")]
    long = {
        str(p.relative_to(ROOT)): n
        for p in paths
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


@pytest.fixture
def crowded_directory(tmp_path: Path) -> Path:
    """A working directory with a user's own ``schemas``, ``connectors``, ``serving`` and
    ``stream_workers`` (each fails when imported), as a notebook or FastAPI app often has."""
    poison = 'raise ImportError("the user\'s own module was imported")\n'
    (tmp_path / "schemas.py").write_text(poison)
    (tmp_path / "connectors.py").write_text(poison)
    for package in ("serving", "stream_workers"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text(poison)
    return tmp_path


def _run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HEADWATER_HOME": str(cwd / "home"), "COLUMNS": "200"}
    env.pop("PYTHONPATH", None)
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_sdk_and_the_cli_work_beside_a_users_own_schemas_and_serving(
    crowded_directory: Path,
) -> None:
    examples = ROOT / "examples"
    sdk = _run(
        crowded_directory,
        "-c",
        "import sys; sys.path.insert(0, '')\n"  # as `python` in a notebook's directory does
        "from headwater import FeatureStore\n"
        "from pathlib import Path\n"
        "from headwater.schemas.loader import load_definitions\n"
        "import headwater.serving.app, headwater.stream_workers.app\n"
        f"defs = load_definitions(Path({str(examples)!r}))\n"
        "print(sorted(fs.name for fs in defs.feature_sets), FeatureStore.__name__)\n",
    )
    assert sdk.returncode == 0, sdk.stderr
    assert sdk.stdout.strip() == "['user_spend'] FeatureStore"
    cli = _run(crowded_directory, "-m", "headwater", "apply", str(examples), "--dry-run")
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert "user_spend" in cli.stdout


@pytest.mark.integration  # builds a wheel (pip fetches setuptools): seconds, no services
def test_the_wheel_installs_only_the_headwater_namespace(tmp_path: Path) -> None:
    # From a copy: setuptools builds in the source tree (build/), which is not ours to litter.
    source = tmp_path / "source"
    shutil.copytree(
        ROOT,
        source,
        symlinks=True,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", ".headwater", "build", "*.egg-info", "__pycache__", ".*_cache"
        ),
    )
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q"]
        + ["-w", str(tmp_path), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("headwater-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top_level == {"headwater"}
    for member in (
        "headwater/py.typed",
        "headwater/schemas/definitions.py",
        "headwater/connectors/kafka.py",
        "headwater/serving/app.py",
        "headwater/stream_workers/processor.py",
        "headwater/stack/pom.xml",
        "headwater/example_definitions/features.yaml",
        "headwater/example_definitions/transactions.avsc",
        "headwater/connectors/catalog/migrations/env.py",
        "headwater/connectors/catalog/migrations/versions/0001_initial.py",
        # The web console's files (package data: the API serves them at /ui).
        "headwater/serving/console/index.html",
        "headwater/serving/console/console.css",
        "headwater/serving/console/console.js",
        "headwater/serving/console/charts.js",
        "headwater/serving/console/pages.js",
        "headwater/serving/console/analysis.js",
        "headwater/serving/console/start.js",
    ):
        assert member in names, member
