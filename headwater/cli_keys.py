"""``headwater keys ...`` (API keys) and ``headwater audit`` (who did what).

Both work on the catalog directly, so whoever runs them has the catalog's credentials: they
are the admin's tools. Every change they make is audited under ``cli:<user>@<host>``.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from headwater.cli_app import app, err
from headwater.connectors.catalog import (
    ApiKey,
    AuditQuery,
    Catalog,
    Grants,
    KeyStore,
    Scope,
    load_server_secret,
)
from headwater.connectors.catalog.keys import ANY
from headwater.schemas.durations import parse_duration
from headwater.schemas.settings import load_settings

__all__ = ["keys_app"]

keys_app = typer.Typer(
    no_args_is_help=True, help="Create, list, rotate and revoke API keys (stored hashed)."
)
app.add_typer(keys_app, name="keys")
# Ids must be copyable whole: no truncation when the output is piped (Rich's default is 80).
_out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)


def _store() -> KeyStore:
    settings = load_settings()
    return Catalog(settings.catalog_url).key_store(
        load_server_secret(settings.security, settings.home)
    )


def _when(ms: int | None) -> str:
    if ms is None:
        return ""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _show_new(token: str, key: ApiKey) -> None:
    """The key alone on stdout (``KEY=$(headwater keys create ...)``), the rest on stderr."""
    err.print(
        f"created key {key.id} ({key.name}, scope {key.scope.value}). Store it now: it is "
        "shown once and kept only as a hash. Send it as `Authorization: Bearer <key>` or "
        "`X-API-Key: <key>`; Python clients read HEADWATER_SECURITY__API_KEY.",
        highlight=False,
        soft_wrap=True,
    )
    typer.echo(token)


def _names(values: list[str] | None) -> list[str]:
    """Repeated and comma-separated option values, in order, without blanks."""
    return [n.strip() for v in values or [] for n in v.split(",") if n.strip()]


@keys_app.command("create")
def keys_create(
    scope: Annotated[
        list[str],
        typer.Option("--scope", "--scopes", help="read, write (push, schemas) or admin; they nest"),
    ],
    name: Annotated[str | None, typer.Option(help="Who holds the key, e.g. fraud-scoring")] = None,
    feature_set: Annotated[
        list[str] | None,
        typer.Option(
            "--feature-set", "--feature-sets", help="Feature sets it may read (default all)"
        ),
    ] = None,
    source: Annotated[
        list[str] | None,
        typer.Option("--source", "--sources", help="Sources it may push to (default all)"),
    ] = None,
    pii: Annotated[
        list[str] | None,
        typer.Option("--pii", help="Feature sets whose pii features it may read ('*': all)"),
    ] = None,
) -> None:
    """Create a key; its text is printed once, alone on stdout."""
    try:
        scopes = [Scope(s.lower()) for s in _names(scope)]
    except ValueError:
        msg = f"unknown scope in {scope}; use read, write or admin"
        raise typer.BadParameter(msg, param_hint="--scope") from None
    if not scopes:
        raise typer.BadParameter("give read, write or admin", param_hint="--scope")
    highest = max(scopes, key=lambda s: [Scope.READ, Scope.WRITE, Scope.ADMIN].index(s))
    grants = Grants(
        feature_sets=tuple(_names(feature_set) or [ANY]),
        sources=tuple(_names(source) or [ANY]),
        pii=tuple(_names(pii)),
    )
    issued = _store().create(name or f"{highest.value}-key", highest, grants)
    _show_new(issued.token, issued.key)


@keys_app.command("list")
def keys_list(
    all_keys: Annotated[bool, typer.Option("--all", help="Include revoked keys")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line")] = False,
) -> None:
    """Keys with their scope, grants and dates (never their secrets)."""
    if as_json:
        for key in _store().list(include_revoked=all_keys):
            typer.echo(json.dumps(key.to_dict(), sort_keys=True))
        return
    table = Table("name", "scope", "feature sets", "sources", "pii", "created", "revoked")
    table.add_column("id", no_wrap=True, min_width=12)
    for key in _store().list(include_revoked=all_keys):
        g = key.grants
        table.add_row(
            key.name,
            key.scope.value,
            ",".join(g.feature_sets),
            ",".join(g.sources),
            ",".join(g.pii) or "-",
            _when(key.created_at_ms),
            _when(key.revoked_at_ms) + (f" -> {key.replaced_by}" if key.replaced_by else ""),
            key.id,
        )
    _out.print(table)


@keys_app.command("rotate")
def keys_rotate(key_id: Annotated[str, typer.Argument(help="Id of the key to replace")]) -> None:
    """Replace a key by a new one with the same grants; the old one stops working."""
    issued = _store().rotate(key_id)
    err.print(f"key {key_id} is revoked; its replacement:", highlight=False)
    _show_new(issued.token, issued.key)


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="Id of the key")]) -> None:
    """Revoke a key (within security.key_cache_seconds every API process refuses it)."""
    key = _store().revoke(key_id)
    _out.print(f"revoked key {key.id} ({key.name}) at {_when(key.revoked_at_ms)}")


@app.command("audit")
def audit_command(
    action: Annotated[str | None, typer.Option(help="Only this action, e.g. apply")] = None,
    actor: Annotated[str | None, typer.Option(help="Only this actor")] = None,
    outcome: Annotated[str | None, typer.Option(help="ok or refused")] = None,
    since: Annotated[str | None, typer.Option(help="Only the last ..., e.g. 1h or 7d")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Newest entries to show")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line")] = False,
) -> None:
    """Who did what, to what, when, and the outcome: admin actions, deletions, erasures
    and refused API requests."""
    try:
        since_ms = time.time_ns() // 1_000_000 - parse_duration(since) if since else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--since") from None
    settings = load_settings()
    entries = Catalog(settings.catalog_url).audit(
        AuditQuery(action, actor, outcome, since_ms, limit)
    )
    if as_json:
        for entry in entries:
            typer.echo(json.dumps(entry.to_dict(), sort_keys=True))
        return
    table = Table("when", "actor", "action", "target", "outcome", "detail")
    for e in entries:
        detail = json.dumps(e.detail, sort_keys=True)
        table.add_row(
            _when(e.at_ms),
            e.actor,
            e.action,
            e.target,
            e.outcome,
            detail if len(detail) <= 80 else detail[:77] + "...",
        )
    _out.print(table)
