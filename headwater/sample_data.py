"""The bundled sample dataset: card transactions, generated deterministically.

The same ``seed`` and ``end_ms`` give the same rows, byte for byte. The demo ends the data at
the current minute so online features have something inside their windows; tests pass a fixed
``end_ms``. About 2 % of rows are written late (after rows with newer event times) so the
pipeline always sees out-of-order data.
"""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["SAMPLE_SCHEMA", "generate_transactions", "write_transactions"]

SAMPLE_SCHEMA = pa.schema(
    [
        ("transaction_id", pa.string()),
        ("user_id", pa.string()),
        ("merchant_id", pa.string()),
        ("amount", pa.float64()),
        ("currency", pa.string()),
        ("status", pa.string()),
        ("event_time", pa.int64()),
    ]
)
_DAY_MS = 86_400_000


def generate_transactions(
    *,
    end_ms: int,
    users: int = 3_000,
    days: int = 30,
    events_per_user_day: float = 3.3,
    seed: int = 7,
) -> pa.Table:
    """Rows in arrival order (mostly by event time, a few late ones)."""
    rng = random.Random(seed)
    start_ms = end_ms - days * _DAY_MS
    merchants = [f"m{m:04d}" for m in range(400)]
    rows: list[tuple[str, str, str, float, str, str, int]] = []
    for u in range(users):
        user = f"u{u:05d}"
        activity = rng.lognormvariate(0, 0.6)
        favourites = rng.sample(merchants, 5)
        n = max(1, round(days * events_per_user_day * activity))
        for _ in range(n):
            t = start_ms + int(rng.random() * (end_ms - start_ms))
            if rng.random() < 0.15:  # bursts: several purchases within minutes
                t = min(end_ms, t + rng.randrange(0, 600_000))
            merchant = rng.choice(favourites) if rng.random() < 0.7 else rng.choice(merchants)
            amount = round(rng.lognormvariate(3.2, 1.0), 2)
            status = "declined" if rng.random() < 0.05 else "approved"
            rows.append(("", user, merchant, amount, "EUR", status, t))
    rows.sort(key=lambda r: (r[6], r[1]))
    # Late arrivals: move 2 % of rows up to 6 hours later in the arrival order.
    order = list(range(len(rows)))
    for i in range(len(rows)):
        if rng.random() < 0.02:
            j = i
            while j + 1 < len(rows) and rows[order[j + 1]][6] - rows[order[i]][6] < rng.randrange(
                1, 6 * 3_600_000
            ):
                j += 1
                if j - i > 2_000:
                    break
            order.insert(j, order.pop(i))
    ordered = [rows[i] for i in order]
    columns = list(zip(*ordered, strict=True))
    ids = [f"t{i:08d}" for i in range(len(ordered))]
    return pa.table(
        [ids, *[list(c) for c in columns[1:]]],
        schema=SAMPLE_SCHEMA,
    )


def write_transactions(path: Path, *, end_ms: int, **kwargs: float) -> pa.Table:
    """Generate the dataset and write it as Parquet at ``path``."""
    table = generate_transactions(end_ms=end_ms, **kwargs)  # type: ignore[arg-type]  # typed kwargs pass through
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return table
