"""The loader's bookkeeping: where each definition was written, and the problems found so far.

Shared by the readers of each definition kind (``loader_yaml``, ``loader_feature_sets``,
``loader_python``) and the checks of references between definitions (``loader_references``),
so every problem is worded as ``<file>: <path in it>: <what and the fix>`` in one place and
a definition that failed to load is remembered, so references to it are not reported again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from headwater.schemas.definitions import Entity, FeatureService, FeatureSet, Source
from headwater.schemas.suggestions import did_you_mean

__all__ = ["Collector", "Loaded", "Placed"]

T = TypeVar("T")


@dataclass
class Collector:
    """The problems of one file, each at a path inside it (``feature_sets[0].ttl``)."""

    file: Path
    problems: list[str] = field(default_factory=list)

    def add(self, where: str, message: str) -> None:
        self.problems.append(f"{self.file}: {where}: {message}")

    def attempt(self, where: str, build: Callable[..., T | None], *args: Any) -> T | None:
        """``build(*args)``, or ``None`` after adding the ``ValueError``, ``KeyError`` or
        ``TypeError`` it raised (the definition objects check their own invariants)."""
        try:
            return build(*args)
        except (ValueError, KeyError, TypeError) as exc:
            self.add(where, str(exc.args[0]) if exc.args else repr(exc))
            return None

    def names(self, where: str, value: Any, example: str) -> list[str] | None:
        """A list of strings (a single string counts as a list of one), or ``None`` after a
        problem."""
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.add(where, f"expected a list of names like {example}, got {value!r}")
            return None
        return value

    def entries(self, where: str, value: Any) -> list[Any]:
        """A list written under ``where`` (absent: empty), or empty after a problem."""
        if value is None:
            return []
        if not isinstance(value, list):
            self.add(where, f"expected a list, got {type(value).__name__}")
            return []
        return value

    def mapping(
        self, where: str, value: Any, allowed: set[str], example: str
    ) -> dict[Any, Any] | None:
        """``value`` if it is a mapping (with a problem per key outside ``allowed``), or
        ``None`` after a problem; ``example`` shows one."""
        if not isinstance(value, dict):
            self.add(where, f"expected a mapping like {example}, got {value!r}")
            return None
        self.unknown_keys(where, value, allowed)
        return value

    def unknown_keys(self, where: str, item: dict[Any, Any], allowed: set[str]) -> None:
        """One problem per key of ``item`` (written at ``where``) outside ``allowed``."""
        for key in sorted(set(item) - allowed, key=str):
            self.add(
                f"{where}.{key}",
                f"unknown key; expected one of {sorted(allowed)}" + did_you_mean(key, allowed),
            )


@dataclass
class Placed(Generic[T]):
    """A definition and where it was written; ``features`` maps feature names to their paths."""

    item: T
    file: Path
    where: str
    features: dict[str, str] = field(default_factory=dict)
    broken_features: set[str] = field(default_factory=set)

    def at(self, suffix: str = "") -> str:
        return f"{self.file}: {self.where}{suffix}"


@dataclass
class Loaded:
    """Every definition read so far, from every file."""

    entities: list[Placed[Entity]] = field(default_factory=list)
    sources: list[Placed[Source]] = field(default_factory=list)
    sets: list[Placed[FeatureSet]] = field(default_factory=list)
    services: list[Placed[FeatureService]] = field(default_factory=list)
    # Names that were written but failed to load: references to them are not reported again.
    broken: set[tuple[str, str]] = field(default_factory=set)
