"""Definitions written as a Python module: run it, and collect what it builds at its top level.

Separate from the YAML readers because nothing here parses: the definition objects checked
their own invariants when the module built them, so only where each one was bound is noted,
and the references between them are checked with the YAML ones (``loader_references``).
"""

from __future__ import annotations

import runpy
from pathlib import Path
from typing import Any

from headwater.schemas.definitions import Definitions, Entity, FeatureService, FeatureSet, Source
from headwater.schemas.loader_problems import Collector, Loaded, Placed

__all__ = ["load_python"]

_SECTIONS = ("entities", "sources", "feature_sets", "feature_services")


def load_python(file: Path, c: Collector, loaded: Loaded) -> None:
    """Collect the definition objects a Python module builds at its top level.

    Objects bound to several names count once; ``Definitions`` objects contribute all they
    hold. Names starting with ``_`` are private and skipped.
    """
    try:
        namespace = runpy.run_path(str(file), run_name=f"headwater_definitions_{file.stem}")
    except Exception as exc:  # noqa: BLE001 - the user's module: any failure is a definition problem
        c.add("<module>", f"running the module failed: {type(exc).__name__}: {exc}")
        return
    seen: set[int] = set()

    def place(item: Any, where: str) -> None:
        if id(item) in seen:
            return
        seen.add(id(item))
        placed: Placed[Any] = Placed(item, file, where)
        if isinstance(item, Entity):
            loaded.entities.append(placed)
        elif isinstance(item, Source):
            loaded.sources.append(placed)
        elif isinstance(item, FeatureSet):
            placed.features = {f.name: f".features[{i}]" for i, f in enumerate(item.features)}
            loaded.sets.append(placed)
        elif isinstance(item, FeatureService):
            loaded.services.append(placed)

    for name, value in namespace.items():
        if name.startswith("_"):
            continue
        if isinstance(value, Definitions):
            for section in _SECTIONS:
                for i, item in enumerate(getattr(value, section)):
                    place(item, f"{name}.{section}[{i}]")
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                place(item, f"{name}[{i}]")
        else:
            place(value, name)
