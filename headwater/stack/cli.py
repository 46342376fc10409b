"""Console front end of :func:`headwater.stack.up` and :func:`headwater.stack.down`.

The lead wires these into the main typer app as ``headwater up`` and ``headwater down``.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from headwater.schemas.errors import FeatureStoreError
from headwater.schemas.settings import Settings, load_settings
from headwater.stack import ServiceStatus, down, up
from headwater.stack.kafka_nodes import cluster_bootstrap
from headwater.stack.secure import client_exports

__all__ = ["down_command", "status_table", "up_command"]

_STYLES = {"started": "green", "reused": "cyan", "stopped": "yellow", "not running": "dim"}


def status_table(statuses: list[ServiceStatus]) -> Table:
    """One row per service: what happened, where it listens, its pid and how long it took."""
    table = Table(show_edge=False, header_style="bold")
    for column in ("service", "state", "address", "pid"):
        table.add_column(column)
    table.add_column("seconds", justify="right")
    for s in statuses:
        style = _STYLES.get(s.state, "")
        pid = "-" if s.pid is None else str(s.pid)
        table.add_row(s.name, f"[{style}]{s.state}[/]", s.address, pid, f"{s.seconds:.1f}")
    return table


def _run(
    action: Callable[[Settings], list[ServiceStatus]],
    doing: str,
    *,
    secure: bool = False,
    kafka_brokers: int | None = None,
    redis_cluster: bool = False,
) -> None:
    console, errors = Console(), Console(stderr=True)
    try:
        settings = load_settings()
        stack: dict[str, object] = {}
        if secure:
            stack["secure"] = True
        if kafka_brokers is not None:
            stack["kafka_brokers"] = kafka_brokers
        if stack:
            # Validated like the settings themselves (1 to 9 brokers).
            settings = load_settings(stack={**settings.stack.model_dump(), **stack})
        if redis_cluster:
            settings = settings.model_copy(
                update={"redis": settings.redis.model_copy(update={"cluster": True})}
            )
        with console.status(doing):
            statuses = action(settings)
    except FeatureStoreError as exc:
        # The first line is the cause and fix; anything after it is a log excerpt.
        first, _, rest = str(exc).partition("\n")
        errors.print(f"[red]error: {escape(first)}[/]", soft_wrap=True)
        if rest:
            errors.print(escape(rest), style="dim", soft_wrap=True, highlight=False)
        raise typer.Exit(code=1) from None
    console.print(status_table(statuses))
    if action is up and settings.stack.kafka_brokers > 1:
        console.print(
            "Point every Headwater process at all the brokers, so that a client starting "
            "while one is down finds the others:"
        )
        console.print(
            f"  export HEADWATER_KAFKA__BOOTSTRAP_SERVERS={cluster_bootstrap(settings)}",
            highlight=False,
            soft_wrap=True,
        )
    if action is up and settings.redis.cluster:
        nodes = [
            s.address.removeprefix("redis://") for s in statuses if s.name.startswith("redis-")
        ]
        console.print(
            "Redis runs as a cluster: point every Headwater process at it (the other nodes "
            "let a process find it while the URL's node is down):"
        )
        for line in (
            "export HEADWATER_REDIS__CLUSTER=true",
            f"export HEADWATER_REDIS__CLUSTER_NODES='{json.dumps(nodes[1:])}'",
        ):
            console.print(f"  {escape(line)}", highlight=False, soft_wrap=True)
    if settings.stack.secure and action is up:
        console.print(
            "Kafka requires SASL (SCRAM-SHA-512) and Redis an ACL user. Point Headwater at "
            "them with (the passwords stay in their 0600 files):"
        )
        for line in client_exports(settings):
            console.print(f"  {escape(line)}", highlight=False, soft_wrap=True)


def up_command(
    *, secure: bool = False, kafka_brokers: int | None = None, redis_cluster: bool = False
) -> None:
    """Start the local Kafka broker(s) and Redis, reusing any that already answer; ``secure``
    (or ``stack.secure``) makes them require SASL/SCRAM and an ACL user; ``kafka_brokers``
    (or ``stack.kafka_brokers``) starts a Kafka cluster of that many nodes; ``redis_cluster``
    (or ``redis.cluster``) starts a six-node Redis Cluster instead of one server."""
    _run(
        up,
        "starting Kafka and Redis (the first run fetches Kafka from Maven Central)...",
        secure=secure,
        kafka_brokers=kafka_brokers,
        redis_cluster=redis_cluster,
    )


def down_command() -> None:
    """Stop the Kafka broker and Redis that `headwater up` started; others are left alone."""
    _run(down, "stopping Kafka and Redis...")
