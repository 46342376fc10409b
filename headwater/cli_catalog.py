"""``headwater catalog ...``: browse the feature catalog (list, search, show, lineage)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console

from headwater.cli_app import app, fail
from headwater.schemas.errors import UnknownNameError
from headwater.schemas.settings import load_settings

catalog_app = typer.Typer(no_args_is_help=True, help="Browse the feature catalog.")
app.add_typer(catalog_app, name="catalog")


def _catalog() -> tuple[Any, Any]:
    from headwater.connectors.catalog import Catalog
    from headwater.connectors.offline_delta import DeltaOfflineStore

    settings = load_settings()
    return Catalog(settings.catalog_url), DeltaOfflineStore(settings.offline_location)


@catalog_app.command("list")
def catalog_list() -> None:
    """Every active feature set with its entity, owner and tags."""
    from rich.table import Table

    catalog, _ = _catalog()
    sets = catalog.definitions().feature_sets
    table = Table(show_edge=False, header_style="bold")
    for column in ("feature set", "entity", "source", "features", "owner", "tags", "description"):
        table.add_column(column)
    for fs in sets:
        table.add_row(
            fs.qualified_name,
            fs.entity,
            fs.source,
            str(len(fs.features)),
            fs.owner,
            ", ".join(fs.tags),
            fs.description,
        )
    Console().print(table)


@catalog_app.command("search")
def catalog_search(
    words: Annotated[
        list[str],
        typer.Argument(help="Words to match in names, descriptions, tags, labels, owners"),
    ],
) -> None:
    """Find features by name, description, tags, labels or owner (all words must match)."""
    query = " ".join(words)
    from rich.table import Table

    from headwater.serving.catalog_views import search_features

    catalog, _ = _catalog()
    hits = search_features(catalog.definitions(), query)
    table = Table(
        show_edge=False, header_style="bold", title=f"{len(hits)} feature(s) match {query!r}"
    )
    for column in ("reference", "function", "field", "window", "owner", "tags"):
        table.add_column(column)
    for h in hits:
        table.add_row(
            h["reference"],
            h["function"],
            h["field"] or "",
            h["window"],
            h["owner"],
            ", ".join(h["tags"]),
        )
    Console().print(table)


@catalog_app.command("show")
def catalog_show(name: Annotated[str, typer.Argument(help="Feature set name")]) -> None:
    """One feature set: its definition and versions, as JSON."""
    import json

    from headwater.serving.catalog_views import feature_set_summary

    catalog, _ = _catalog()
    versions = catalog.feature_set_versions(name)
    if not versions:
        msg = f"unknown feature set {name!r}; see `headwater catalog list`"
        fail(UnknownNameError(msg, kind="feature set", name=name))
    shown = [feature_set_summary(fs, status=status) for fs, status in versions]
    Console().print_json(json.dumps(shown if len(shown) > 1 else shown[0]))


@catalog_app.command("lineage")
def catalog_lineage(name: Annotated[str, typer.Argument(help="Feature set name")]) -> None:
    """Source topic and schema -> versions -> online keys and Delta table -> services."""
    import json

    from headwater.serving.catalog_views import lineage

    catalog, offline = _catalog()
    graph = lineage(catalog, offline, name, key_prefix=load_settings().redis.key_prefix)
    Console().print_json(json.dumps(graph))
