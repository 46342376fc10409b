"""The one import of the native extension (``native/``: Rust, PyO3, built by ``make setup``).

Every native hot path has a Python twin that gives the same values; without the extension
(a plain ``pip install`` of the package) ``extension`` is ``None`` and the twins serve.
"""

from __future__ import annotations

from types import ModuleType
from typing import Final

__all__ = ["extension", "native_available"]

extension: ModuleType | None
try:
    import headwater_native as extension
except ImportError:  # pragma: no cover - exercised only without the extension
    extension = None

native_available: Final[bool] = extension is not None
"""Whether the native extension is installed."""
