"""In-process cost of each aggregation kind: folding events into tile states and evaluating
an entity's windows, beside a plain ``sum`` of the same shape.

    .venv/bin/python bench/aggregation_fold.py [--events 50000] [--entities 500]

No services: one ``FeatureSetPlan`` per kind, three features over 1h/1d/7d at 1-minute
resolution (bulky kinds get their coarser tiles), events spread over 7 days, applied one at a
time as a worker applies a batch's events per entity (``FeatureSetPlan.apply``, the Python
fold: the native fold covers only the original kinds), then every entity evaluated once at
the end. Prints events/s and microseconds per entity evaluation, each as a ratio to ``sum``.
"""

from __future__ import annotations

import argparse
import random
import time
from typing import Any

from rich.console import Console
from rich.table import Table

from headwater.schemas.avro import AvroSchema
from headwater.schemas.definitions import Feature, FeatureSet, Source
from headwater.schemas.tiles import EntityState, FeatureSetPlan

HOUR = 3_600_000
DAY = 24 * HOUR
WINDOWS = (HOUR, DAY, 7 * DAY)
SOURCE = Source(
    name="t",
    schema=AvroSchema.from_dict(
        {
            "type": "record",
            "name": "T",
            "fields": [
                {"name": "u", "type": "string"},
                {"name": "ts", "type": "long"},
                {"name": "amount", "type": "double"},
                {"name": "merchant", "type": "string"},
            ],
        }
    ),
    timestamp="ts",
)
KINDS: dict[str, dict[str, Any]] = {
    "sum": {"function": "sum", "field": "amount"},
    "approx_percentile": {
        "function": "approx_percentile",
        "field": "amount",
        "percentiles": (0.5, 0.9, 0.99),
    },
    "approx_count_distinct": {"function": "approx_count_distinct", "field": "merchant"},
    "top_k": {"function": "top_k", "field": "merchant", "k": 5},
    "variance": {"function": "variance", "field": "amount"},
    "count_if": {"function": "count_if", "where": "amount > 50"},
}


def measure(kind: str, events: int, entities: int) -> tuple[float, float]:
    """(events folded per second, microseconds per entity evaluation)."""
    features = tuple(
        Feature(name=f"f{i}", window_ms=window, **KINDS[kind]) for i, window in enumerate(WINDOWS)
    )
    plan = FeatureSetPlan(FeatureSet(name="x", entity="u", source="t", features=features), SOURCE)
    rng = random.Random(3)
    now = 30 * DAY
    states = [EntityState() for _ in range(entities)]
    rows = [
        (
            {"amount": rng.lognormvariate(3, 1), "merchant": f"m{rng.randrange(50)}"},
            now - rng.randrange(7 * DAY),
            i,
        )
        for i in range(events)
    ]
    for row in rows:  # the where condition's column, as the worker adds it per batch
        row[0].update({name: row[0]["amount"] > 50 for name in plan.conditions})
    started = time.perf_counter()
    for i, row in enumerate(rows):
        plan.apply(states[i % entities], [row], now)
    folded = events / (time.perf_counter() - started)
    started = time.perf_counter()
    for state in states:
        plan.evaluate(state, now)
    return folded, (time.perf_counter() - started) / entities * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--entities", type=int, default=500)
    args = parser.parse_args()
    results = {kind: measure(kind, args.events, args.entities) for kind in KINDS}
    fold_sum, evaluate_sum = results["sum"]
    table = Table(title=f"{args.events:,} events, {args.entities:,} entities, 1h/1d/7d windows")
    for column in ("kind", "fold events/s", "vs sum", "evaluate us/entity", "vs sum"):
        table.add_column(column, justify="left" if column == "kind" else "right")
    for kind, (fold, evaluate) in results.items():
        table.add_row(
            kind,
            f"{fold:,.0f}",
            f"{fold / fold_sum:.2f}",
            f"{evaluate:,.0f}",
            f"{evaluate / evaluate_sum:.2f}",
        )
    Console().print(table)


if __name__ == "__main__":
    main()
