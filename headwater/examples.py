"""The bundled example definitions (``examples/``), optionally renamed for isolation.

The demo, the benchmarks and the tests run the same definitions; a suffix on the topic,
source and feature-set names lets several of them share one broker and Redis.
"""

from __future__ import annotations

import shutil
from pathlib import Path

__all__ = ["EXAMPLES", "write_example_definitions"]

EXAMPLES = Path(__file__).resolve().parent / "example_definitions"
"""The repository's ``examples/`` (linked into the package, so an installed wheel has them)."""


def write_example_definitions(directory: Path, suffix: str = "") -> Path:
    """Copy the example definitions into ``directory``, with ``_<suffix>`` on their names."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(EXAMPLES / "transactions.avsc", directory / "transactions.avsc")
    text = (EXAMPLES / "features.yaml").read_text()
    if suffix:
        text = (
            text.replace("raw.transactions", f"raw.transactions_{suffix}")
            .replace("name: transactions", f"name: transactions_{suffix}")
            .replace("source: transactions", f"source: transactions_{suffix}")
            .replace("user_spend", f"user_spend_{suffix}")
        )
    (directory / "features.yaml").write_text(text)
    return directory
