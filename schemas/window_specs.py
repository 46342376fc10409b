"""Windows as tiles see them: per-feature tile lengths, offsets, and ``where`` columns.

A feature's window ``W`` with tile length ``R`` (``FeatureSet.tile_ms``) and offset ``O``
covers, at time ``t``, the events with ``e <= t`` whose tile ``K(e) = e // R`` lies in
``(K(t) - (W + O) / R, K(t) - O / R]``: the last ``W`` of tiles ending ``O`` before the tile
of ``t``. With ``R`` the set's resolution and ``O = 0`` this is DESIGN §4's window. Online
(``schemas.tiles``), offline (``serving.windows``) and the tests' brute force all take their
bounds from here.
"""

from __future__ import annotations

import hashlib
from typing import TypeVar

import numpy as np

from headwater.schemas.definitions import Feature, FeatureSet

__all__ = ["WindowSpec", "condition_column", "tile_bounds", "window_spec"]

WindowSpec = tuple[int, int, int]
"""A window as tiles see it: ``(window_ms, tile_ms, offset_ms)``. At time ``t`` it covers the
events with ``e <= t`` whose tile ``K(e) = e // tile_ms`` lies in
``(K(t) - (window + offset) / tile, K(t) - offset / tile]``."""


def condition_column(text: str) -> str:
    """The column holding a feature's ``where`` condition: named by the condition's text, so
    features with one condition share it, and adding a feature never renames another's
    state (partial keys name the column)."""
    return "_where_" + hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:12]


def window_spec(feature_set: FeatureSet, feature: Feature) -> WindowSpec | None:
    """The tiles view of ``feature``'s window; ``None`` for a lifetime feature."""
    if feature.window_ms is None:
        return None
    return (feature.window_ms, feature_set.tile_ms(feature), feature.offset_ms or 0)


_Tile = TypeVar("_Tile", int, np.ndarray)


def tile_bounds(spec: WindowSpec, k_t: _Tile, resolution_ms: int) -> tuple[_Tile, _Tile]:
    """The first and last tile (in the set's tiles, both included) of window ``spec`` at a
    time in tile ``k_t``. A coarse tile's partials are kept in the set's tile where it starts,
    so a coarse window's tiles are found by the set's tile indexes too. ``k_t`` may be an
    array of tiles (offline: one per label row)."""
    window, tile, offset = spec
    m = tile // resolution_ms
    coarse = k_t // m
    low = (coarse - (window + offset) // tile + 1) * m
    high = k_t if offset == 0 else (coarse - offset // tile + 1) * m - 1
    return low, high
