"""Load definitions from YAML files or Python modules (DESIGN §5), reporting every problem of
a file at once.

Each problem names the file, the path inside it (``feature_sets[0].features[2].window``),
what was found and how to fix it. References between definitions may cross files; they are
checked once every file is read, and a reference to a definition that itself failed to load
is not reported again.

This module walks the files and gathers the result; the readers are ``loader_yaml`` (with
``loader_feature_sets``) and ``loader_python``, the checks across definitions
``loader_references``, and the bookkeeping they share ``loader_problems``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from headwater.schemas.definitions import Definitions
from headwater.schemas.errors import DefinitionError
from headwater.schemas.loader_problems import Collector, Loaded
from headwater.schemas.loader_python import load_python
from headwater.schemas.loader_references import cross_check
from headwater.schemas.loader_yaml import load_yaml

__all__ = ["load_definitions"]


def _files(path: Path) -> Iterator[Path]:
    if path.is_dir():
        yield from sorted(
            p for p in path.rglob("*") if p.suffix in (".yaml", ".yml", ".py") and p.is_file()
        )
    elif path.exists():
        yield path
    else:
        msg = (
            f"{path}: no such file or directory; give a YAML or Python file or a directory of them"
        )
        raise DefinitionError(msg)


def load_definitions(path: Path) -> Definitions:
    """Load and cross-check every definition file under ``path``.

    Raises:
        DefinitionError: listing every problem found, one per line.
    """
    loaded = Loaded()
    problems: list[str] = []
    for file in _files(path):
        c = Collector(file)
        if file.suffix == ".py":
            load_python(file, c, loaded)
        else:
            load_yaml(file, c, loaded)
        problems += c.problems
    problems += cross_check(loaded)
    if problems:
        msg = f"{len(problems)} problem(s) in the definitions:\n  " + "\n  ".join(problems)
        raise DefinitionError(msg)
    return Definitions(
        entities=tuple(p.item for p in loaded.entities),
        sources=tuple(p.item for p in loaded.sources),
        feature_sets=tuple(p.item for p in loaded.sets),
        feature_services=tuple(p.item for p in loaded.services),
    )
