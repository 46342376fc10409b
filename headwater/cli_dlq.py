"""``headwater dlq ...``: see dead letters and replay them once fixed."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from headwater.cli_app import app
from headwater.schemas.settings import load_settings

dlq_app = typer.Typer(no_args_is_help=True, help="See dead letters and replay them once fixed.")
app.add_typer(dlq_app, name="dlq")


@dlq_app.command("list")
def dlq_list() -> None:
    """Dead letters per source and reason: how many, how many replayed, how many pending."""
    from headwater.dlq import count_dead_letters, print_counts

    counts = count_dead_letters(load_settings())
    print_counts(Console(highlight=False), counts)


@dlq_app.command("show")
def dlq_show(
    source: Annotated[str, typer.Argument(help="Source name")],
    reason: Annotated[str | None, typer.Option(help="Only letters of this reason")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Letters to show")] = 10,
) -> None:
    """A sample of a source's dead letters: position, reason, field, error, event time."""
    from headwater.dlq import print_sample, sample_dead_letters

    views, matching = sample_dead_letters(load_settings(), source, reason=reason, limit=limit)
    print_sample(Console(highlight=False), source, views, matching)


@dlq_app.command("replay")
def dlq_replay(
    source: Annotated[str, typer.Argument(help="Source name")],
    reason: Annotated[str | None, typer.Option(help="Only letters of this reason")] = None,
) -> None:
    """Re-produce a source's dead letters into its topic (after fixing what refused them),
    exactly once: letters replayed before are skipped."""
    from headwater.dlq import replay_dead_letters

    report = replay_dead_letters(load_settings(), source, reason=reason)
    which = f" with reason {reason}" if reason else ""
    Console(highlight=False).print(
        f"replayed {report.replayed} dead letter(s) of {report.source}{which} into {report.topic}; "
        f"{report.skipped} replayed before, skipped"
    )
