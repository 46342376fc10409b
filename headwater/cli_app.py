"""The ``headwater`` command's Typer application and its one way of failing.

Every command module registers on ``app``; ``headwater.cli`` imports them all. A project error
(``FeatureStoreError``) or a file error raised by any command is turned into one red line and
exit code 1 here, once, so commands carry no error handling of their own unless they answer
differently (``ingest``: 2 for a bad row, 3 for partial success).
"""

from __future__ import annotations

from typing import Any, NoReturn

import typer
from rich.console import Console
from typer.core import TyperGroup

from headwater.connectors.catalog.audit import acting_as, local_actor
from headwater.schemas.errors import FeatureStoreError

__all__ = ["app", "err", "fail"]

err = Console(stderr=True)


def fail(exc: BaseException) -> NoReturn:
    """Print ``exc`` as the command's error and exit 1."""
    err.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


# The order of ``headwater --help``: the commands live in several modules, imported in
# whatever order, and a user reads them from setting up to operating.
_ORDER = (
    "up",
    "down",
    "apply",
    "retire",
    "compact",
    "reset-epoch",
    "catalog",
    "worker",
    "serve",
    "ingest",
    "retrieve",
    "consistency",
    "stats",
    "drift",
    "monitor",
    "rebuild-online",
    "demo",
    "dlq",
    "keys",
    "audit",
    "erase",
)


class _HeadwaterGroup(TyperGroup):
    """Runs a command, turning the project's errors into ``fail``; lists commands in order."""

    def list_commands(self, ctx: Any) -> list[str]:
        names = super().list_commands(ctx)
        rank = {name: i for i, name in enumerate(_ORDER)}
        return sorted(names, key=lambda name: rank.get(name, len(rank)))

    def invoke(self, ctx: Any) -> Any:  # the vendored click Context (typer >= 0.26)
        try:
            with acting_as(local_actor()):  # the audit's "who" of every change made here
                return super().invoke(ctx)
        except (FeatureStoreError, OSError) as exc:
            fail(exc)


app = typer.Typer(
    cls=_HeadwaterGroup,
    no_args_is_help=True,
    add_completion=False,
    help="Headwater feature store.",
)
